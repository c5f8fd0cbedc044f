package sio

import (
	"bytes"
	"testing"

	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// A []byte returned by a typed handler is acknowledged as binary, not as base64 text.
func TestAckSuccessKeepsBytesBinary(t *testing.T) {
	v, err := ackSuccess([]byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	data, atts, err := sioparser.MarshalData([]any{v})
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 1 || !bytes.Equal(atts[0], []byte{1, 2, 3}) {
		t.Fatalf("attachments %v, data %s: want the bytes as one attachment", atts, data)
	}
	if string(data) != `[{"data":{"_placeholder":true,"num":0},"ok":true}]` {
		t.Fatalf("data %s", data)
	}
}
