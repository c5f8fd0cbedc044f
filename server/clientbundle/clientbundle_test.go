package clientbundle

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// The vendored files are those of the socket.io-client version the lock file
// pins (run `make vendor-client` after changing it).
func TestVendoredBundleMatchesLockFile(t *testing.T) {
	raw, err := os.ReadFile("../../package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		t.Fatal(err)
	}
	want := lock.Packages["node_modules/socket.io-client"].Version
	if want == "" || Version() != want {
		t.Fatalf("vendored socket.io-client %q, lock file %q: run make vendor-client", Version(), want)
	}
	// And byte for byte the package's files (node_modules is installed by make test).
	for _, name := range Files {
		got, _ := dist.ReadFile("dist/" + name)
		orig, err := os.ReadFile(filepath.Join("../../node_modules/socket.io-client/dist", name))
		if err != nil {
			t.Fatalf("%s: %v (npm ci first)", name, err)
		}
		if !bytes.Equal(got, orig) {
			t.Errorf("%s differs from node_modules/socket.io-client %s: run make vendor-client", name, want)
		}
	}
}

func TestServe(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "engine", http.StatusTeapot) })
	ts := httptest.NewServer(New("/socket.io/", next))
	defer ts.Close()
	get := func(path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		// No transparent gzip: the test reads what was sent.
		res, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	plain, _ := dist.ReadFile("dist/socket.io.min.js")
	etag := `"` + Version() + `"`

	res, body := get("/socket.io/socket.io.min.js")
	if res.StatusCode != 200 || !bytes.Equal(body, plain) {
		t.Fatalf("plain: %d, %d bytes", res.StatusCode, len(body))
	}
	for k, v := range map[string]string{"ETag": etag, "Cache-Control": "public, max-age=0", "Content-Type": "application/javascript; charset=utf-8"} {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s %q, want %q", k, got, v)
		}
	}
	if res, _ := get("/socket.io/socket.io.js.map"); res.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("map Content-Type %q", res.Header.Get("Content-Type"))
	}
	for _, inm := range []string{etag, "W/" + etag} {
		if res, body := get("/socket.io/socket.io.min.js", "If-None-Match", inm); res.StatusCode != 304 || len(body) != 0 {
			t.Errorf("If-None-Match %s: %d, %d bytes", inm, res.StatusCode, len(body))
		}
	}
	if res, _ := get("/socket.io/socket.io.min.js", "If-None-Match", `"0.0.1"`); res.StatusCode != 200 {
		t.Errorf("another version's ETag: %d", res.StatusCode)
	}

	res, body = get("/socket.io/socket.io.min.js", "Accept-Encoding", "br, gzip;q=0.8")
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", res.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if un, _ := io.ReadAll(zr); !bytes.Equal(un, plain) || len(body) >= len(plain) {
		t.Errorf("gzip: %d bytes for %d, decompresses to the file: %v", len(body), len(plain), bytes.Equal(un, plain))
	}
	res, body = get("/socket.io/socket.io.min.js", "Accept-Encoding", "gzip;q=0, deflate")
	if res.Header.Get("Content-Encoding") != "deflate" {
		t.Fatalf("Content-Encoding %q, want deflate (gzip refused with q=0)", res.Header.Get("Content-Encoding"))
	}
	fr, err := zlib.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if un, _ := io.ReadAll(fr); !bytes.Equal(un, plain) {
		t.Error("deflate does not decompress to the file")
	}
	if res, _ := get("/socket.io/socket.io.min.js", "Accept-Encoding", "br"); res.Header.Get("Content-Encoding") != "" {
		t.Errorf("br only: Content-Encoding %q, want the plain file", res.Header.Get("Content-Encoding"))
	}

	// Anything else is the engine's.
	for _, p := range []string{"/socket.io/", "/socket.io/?EIO=4&transport=polling", "/socket.io/other.js", "/socket.io.js"} {
		if res, _ := get(p); res.StatusCode != http.StatusTeapot {
			t.Errorf("%s: %d, want the next handler's", p, res.StatusCode)
		}
	}
}
