package sio

import (
	"encoding/json"
	"testing"
)

func TestSplitNspV3(t *testing.T) {
	for _, c := range []struct{ in, name, auth string }{
		{"/", "/", ""},
		{"/chat", "/chat", ""},
		{"/chat?token=abc", "/chat", `{"token":"abc"}`},
		{"/chat?token=a&token=b&x=%C3%A9", "/chat", `{"token":"b","x":"é"}`}, // the last value, as Node's fromEntries
		{"?token=abc", "/", `{"token":"abc"}`},
		{"/chat?", "/chat", ""},
	} {
		name, auth := splitNspV3(c.in)
		if name != c.name || string(auth) != c.auth {
			t.Errorf("%q: %q %s, want %q %s", c.in, name, auth, c.name, c.auth)
		}
	}
}

func TestConnectErrorV3IsTheDataOrTheMessage(t *testing.T) {
	if got := string(connectErrorV3(&Error{Code: "token_invalid", Message: "Invalid token"})); got != `{"code":"token_invalid"}` {
		t.Fatalf("with a code: %s", got)
	}
	got := connectErrorV3(&Error{Message: "nope"})
	var s string
	if json.Unmarshal(got, &s) != nil || s != "nope" {
		t.Fatalf("without a code: %s", got)
	}
	if socketIDV3("/", "abc") != "abc" || socketIDV3("/chat", "abc") != "/chat#abc" {
		t.Fatal("socket ids of v2 clients")
	}
}
