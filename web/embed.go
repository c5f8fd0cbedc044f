// Package web holds the demo page and the client module, embedded in the
// binary so that `switchboard` serves them with zero setup.
package web

import "embed"

// Files is the page (index.html, app.js, style.css), the client module
// (switchboard-client.js) and the vendored official socket.io-client ESM
// build (vendor/).
//
//go:embed index.html app.js style.css switchboard-client.js vendor/socket.io.esm.min.js
var Files embed.FS
