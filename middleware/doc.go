// Package middleware holds the connection-level checks of the client
// contract: JWT authentication, per-socket rate limiting and room id rules.
// Everything here is plain functions and values with no global state, so the
// server can wire them into whatever transport it uses.
package middleware
