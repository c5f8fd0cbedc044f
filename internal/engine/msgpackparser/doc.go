// Package msgpackparser speaks socket.io-msgpack-parser 3.0.2's wire format: every Socket.IO packet is
// one binary Engine.IO message holding a MessagePack map {type, nsp, data, id}, as notepack.io encodes
// it, with binary values inline (there are no attachments and no BINARY_EVENT/BINARY_ACK types).
//
// The rest of the server works on the default parser's form of a packet (JSON data with
// {"_placeholder":true,"num":n} objects plus attachments, see package sioparser), so this package
// translates between the two forms at the edge: [Decode] turns a message into a [sioparser.Packet],
// [Append] a packet back into a message. A broadcast is translated once and the same bytes go to every
// recipient.
//
// The codec is written here rather than on vmihailenco/msgpack: it transcodes straight between
// MessagePack bytes and placeholder JSON without building a value tree, and checks every length a
// message claims against the bytes it has before using it. Nothing in it panics on any input;
// nesting is bounded as in sioparser.
package msgpackparser
