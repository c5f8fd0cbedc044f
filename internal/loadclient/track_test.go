package loadclient

import (
	"strconv"
	"testing"
)

func TestParseDigits(t *testing.T) {
	cases := []string{"", "x", "0", "7", "12345678", "123456789", "1234567:", "00000000000",
		"1795636911779123456", "1795636911779123456xxxx", "99999999/", "12345678:9", "9999999999999999999"}
	for _, c := range cases {
		want, wn := uint64(0), 0
		for wn < len(c) && c[wn] >= '0' && c[wn] <= '9' {
			wn++
		}
		if wn > 0 {
			want, _ = strconv.ParseUint(c[:wn], 10, 64)
		}
		if v, n := parseDigits([]byte(c)); v != want || n != wn {
			t.Errorf("parseDigits(%q) = %d, %d; want %d, %d", c, v, n, want, wn)
		}
	}
	// Every byte around the digit range in every position of a block of 8.
	for pos := 0; pos < 8; pos++ {
		for b := 0; b < 256; b++ {
			s := []byte("12345678")
			s[pos] = byte(b)
			isDigit := b >= '0' && b <= '9'
			v, n := parseDigits(s)
			if isDigit {
				want, _ := strconv.ParseUint(string(s), 10, 64)
				if n != 8 || v != want {
					t.Fatalf("%q: %d %d", s, v, n)
				}
			} else if n != pos {
				t.Fatalf("%q: n=%d, want %d", s, n, pos)
			}
		}
	}
}

func TestParseMessageHint(t *testing.T) {
	var hint int
	msgs := []string{
		`["message",{"id":"a-1","roomId":"fanout","userId":"u1","name":"User 1","text":"0:5:1795636911779123456xxxx","ts":1},"off"]`,
		`["message",{"id":"a-10","roomId":"fanout","userId":"u1","name":"User 1","text":"0:6:1795636911779123457xxxx","ts":1},"off"]`,
		`["message",{"id":"a-11","roomId":"fanout","userId":"u1","name":"User 1","text":"3:7:1795636911779123458","ts":1}]`,
	}
	for i, m := range msgs {
		s, seq, ns, isMsg, ok := ParseMessageHint([]byte(m), &hint)
		if !isMsg || !ok || seq != uint64(5+i) || ns != 1795636911779123456+int64(i) || (i < 2) != (s == 0) {
			t.Fatalf("%d: %v %v %v %v %v", i, s, seq, ns, isMsg, ok)
		}
	}
	if _, _, _, isMsg, ok := ParseMessageHint([]byte(`["message",{"text":"hello"}]`), &hint); !isMsg || ok {
		t.Fatal("foreign text accepted")
	}
	if _, _, _, isMsg, _ := ParseMessageHint([]byte(`["user-joined",{}]`), &hint); isMsg {
		t.Fatal("other event taken for a message")
	}
}
