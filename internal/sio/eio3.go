package sio

import (
	"encoding/json"
	"net/url"
	"strings"
)

// Socket.IO protocol 4, spoken by socket.io-client 2.x over Engine.IO 3
// (Options.AllowEIO3, Node's allowEIO3). Its packets are protocol 5's but
// for the handshake: the client is connected to "/" without asking, a
// CONNECT to another namespace carries its auth as the namespace's query
// ("/chat?token=…"), the server's CONNECT has no payload, and a refused one
// carries the error's data (or its message) alone. Node's server does the
// same; a v2 client's token for "/" comes from the handshake query
// (AUTH_QUERY_TOKEN).

// splitNspV3 parses a protocol 4 namespace: its path, and its query as the
// auth payload (the last value of each key, as Node's
// Object.fromEntries(searchParams)). auth is nil without a query.
func splitNspV3(nsp string) (name string, auth json.RawMessage) {
	i := strings.IndexByte(nsp, '?')
	if i < 0 {
		return nsp, nil
	}
	q, err := url.ParseQuery(nsp[i+1:])
	name = nsp[:i]
	if name == "" {
		name = "/"
	}
	if err != nil || len(q) == 0 {
		return name, nil
	}
	m := make(map[string]string, len(q))
	for k, v := range q {
		m[k] = v[len(v)-1]
	}
	auth, _ = json.Marshal(m)
	return name, auth
}

// connectErrorV3 is the CONNECT_ERROR payload of a protocol 4 client:
// Node's err.data || err.message.
func connectErrorV3(e *Error) json.RawMessage {
	if e.Code != "" {
		b, _ := json.Marshal(map[string]string{"code": e.Code})
		return b
	}
	b, _ := json.Marshal(e.Message)
	return b
}

// socketIDV3 is a protocol 4 socket's id, which the client computes itself:
// the Engine.IO id, prefixed by "nsp#" outside "/".
func socketIDV3(nsp, eid string) string {
	if nsp == "/" {
		return eid
	}
	return nsp + "#" + eid
}
