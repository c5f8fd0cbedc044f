package sio

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboard/switchboard/internal/engine/eio"
	"github.com/switchboard/switchboard/internal/engine/msgpackparser"
	"github.com/switchboard/switchboard/internal/engine/sioparser"
)

// Parser is the encoding of Socket.IO packets spoken to every client of a
// Server (Node's `parser` option). It is the clients' business only: what
// nodes exchange through a cluster adapter does not depend on it.
type Parser uint8

const (
	// ParserDefault is socket.io-parser's: JSON text, binary values as
	// attachments in separate messages.
	ParserDefault Parser = iota
	// ParserMsgpack is socket.io-msgpack-parser 3.0.2's: one binary
	// MessagePack message per packet.
	ParserMsgpack
)

// ParseParser reads a parser name: "default" (or "") and "msgpack".
func ParseParser(name string) (Parser, error) {
	switch name {
	case "", "default":
		return ParserDefault, nil
	case "msgpack":
		return ParserMsgpack, nil
	}
	return 0, fmt.Errorf("unknown parser %q (default, msgpack)", name)
}

// errTextWithMsgpack refuses a text message on a msgpack server: that
// parser sends every packet as binary.
var errTextWithMsgpack = errors.New("sio: text message on a msgpack parser connection")

func (p Parser) String() string {
	if p == ParserMsgpack {
		return "msgpack"
	}
	return "default"
}

// encode builds the engine messages of one packet in the server's parser.
// data is the default parser's JSON, with placeholders for atts.
func (s *Server) encode(t sioparser.PacketType, nsp string, id uint64, hasID bool, data json.RawMessage, atts [][]byte) []*eio.Message {
	if s.opts.Parser != ParserMsgpack {
		return encodePacket(t, nsp, id, hasID, data, atts)
	}
	b, err := msgpackparser.Append(make([]byte, 0, 24+len(nsp)+len(data)), t, nsp, id, hasID, data, atts)
	if err != nil { // only JSON this package produced gets here
		s.log.Error().Err(err).Str("nsp", nsp).Msg("sio: packet not encoded")
		return nil
	}
	return []*eio.Message{eio.BinaryMessage(b)}
}
