// Package web holds the demo page and the client module, embedded in the
// binary so that `switchboard` serves them with zero setup.
package web

import "embed"

// Files is the page (index.html, app.js, style.css) and the client module
// (switchboard-client.js). The page imports socket.io-client from the bundle
// the server serves under /socket.io/ (SERVE_CLIENT, server/clientbundle).
//
//go:embed index.html app.js style.css switchboard-client.js
var Files embed.FS
