// Package clientbundle serves the socket.io-client browser bundle under the
// Socket.IO path, as Node's server does with serveClient: the files of the
// socket.io-client version in package-lock.json, vendored into dist/ by
// `make vendor-client` and embedded in the binary.
//
// Each file is answered with ETag "<version>" (a matching If-None-Match,
// strong or weak, gets 304), Cache-Control "public, max-age=0" and, when the
// client accepts it, gzip or deflate (compressed once, then kept). Node also
// offers brotli; the standard library has no brotli encoder, so a client
// that asks only for br gets the plain file.
package clientbundle
