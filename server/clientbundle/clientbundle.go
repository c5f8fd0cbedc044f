package clientbundle

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"embed"
	"net/http"
	"strings"
	"sync"
)

//go:embed dist/*.js dist/*.map dist/VERSION
var dist embed.FS

// Files are the names served, as Node's CLIENT_FILES.
var Files = []string{
	"socket.io.js", "socket.io.js.map",
	"socket.io.min.js", "socket.io.min.js.map",
	"socket.io.esm.min.js", "socket.io.esm.min.js.map",
	"socket.io.msgpack.min.js", "socket.io.msgpack.min.js.map",
}

// Version is the socket.io-client version vendored.
func Version() string {
	b, _ := dist.ReadFile("dist/VERSION")
	return strings.TrimSpace(string(b))
}

type file struct {
	name  string
	plain []byte
	once  sync.Once
	gz    []byte // gzip of plain, made on first request
	df    []byte // zlib (HTTP deflate) of plain
}

// Handler serves the bundle's files under path (e.g. "/socket.io/"); other
// requests go to next.
type Handler struct {
	path  string
	next  http.Handler
	etag  string
	files map[string]*file
}

// New returns a Handler for path in front of next.
func New(path string, next http.Handler) *Handler {
	h := &Handler{path: path, next: next, etag: `"` + Version() + `"`, files: map[string]*file{}}
	for _, name := range Files {
		b, err := dist.ReadFile("dist/" + name)
		if err != nil {
			panic("clientbundle: " + name + " not vendored: " + err.Error()) // embed guarantees it
		}
		h.files[name] = &file{name: name, plain: b}
	}
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := h.lookup(r)
	if f == nil {
		h.next.ServeHTTP(w, r)
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm == h.etag || inm == "W/"+h.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd := w.Header()
	hd.Set("Cache-Control", "public, max-age=0")
	if strings.HasSuffix(f.name, ".map") {
		hd.Set("Content-Type", "application/json; charset=utf-8")
	} else {
		hd.Set("Content-Type", "application/javascript; charset=utf-8")
	}
	hd.Set("ETag", h.etag)
	hd.Add("Vary", "Accept-Encoding")
	body := f.plain
	switch enc := accepted(r.Header.Values("Accept-Encoding")); enc {
	case "gzip", "deflate":
		f.once.Do(f.compress)
		if enc == "gzip" {
			body = f.gz
		} else {
			body = f.df
		}
		hd.Set("Content-Encoding", enc)
	}
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

// lookup is the file a GET or HEAD asks for, or nil.
func (h *Handler) lookup(r *http.Request) *file {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return nil
	}
	name, ok := strings.CutPrefix(r.URL.Path, h.path)
	if !ok {
		return nil
	}
	return h.files[name]
}

func (f *file) compress() {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = zw.Write(f.plain)
	_ = zw.Close()
	f.gz = bytes.Clone(b.Bytes())
	b.Reset()
	fw, _ := zlib.NewWriterLevel(&b, zlib.BestCompression) // HTTP's "deflate" is zlib (RFC 1950), as Node's createDeflate
	_, _ = fw.Write(f.plain)
	_ = fw.Close()
	f.df = bytes.Clone(b.Bytes())
}

// accepted picks gzip, then deflate, from Accept-Encoding (a q=0 refuses).
func accepted(values []string) string {
	ok := map[string]bool{}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			name = strings.ToLower(strings.TrimSpace(name))
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			if q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000" {
				continue
			}
			ok[name] = true
		}
	}
	switch {
	case ok["gzip"] || ok["*"]:
		return "gzip"
	case ok["deflate"]:
		return "deflate"
	}
	return ""
}
