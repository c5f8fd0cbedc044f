package eio

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// Compression configures what the server compresses, as Node's httpCompression and
// perMessageDeflate options. The zero value compresses nothing (the server package turns HTTP
// compression on by default, as Node does).
type Compression struct {
	// HTTP compresses long-polling responses of at least HTTPThreshold bytes (default 1024,
	// negative: every one) with gzip or deflate, whichever the request's Accept-Encoding prefers.
	HTTP          bool
	HTTPThreshold int
	// PerMessageDeflate accepts a client's permessage-deflate offer (RFC 7692) on the WebSocket
	// transport. Context takeover is refused both ways: no connection keeps a compressor or an
	// LZ77 window between messages, and a broadcast is compressed once for all its recipients.
	// Messages of at least PerMessageDeflateThreshold bytes (default 1024, negative: every one)
	// are sent compressed; an incoming one is inflated up to MaxPayload bytes at most (1009
	// beyond).
	PerMessageDeflate          bool
	PerMessageDeflateThreshold int
}

const defaultCompressionThreshold = 1024 // Node's, for both

func (c *Compression) defaults() {
	c.HTTPThreshold = threshold(c.HTTPThreshold)
	c.PerMessageDeflateThreshold = threshold(c.PerMessageDeflateThreshold)
}

func threshold(n int) int {
	switch {
	case n == 0:
		return defaultCompressionThreshold
	case n < 0:
		return 0
	}
	return n
}

// Compression levels: zlib's default, as Node's zlib (HTTP) and ws (permessage-deflate).
const (
	httpLevel    = gzip.DefaultCompression
	deflateLevel = flate.DefaultCompression
)

// maxPooledBuf bounds the scratch buffers kept in pools: a larger one, for a rare large body,
// is left to the GC.
const maxPooledBuf = 64 << 10

var (
	gzipWriters = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, httpLevel); return w }}
	zlibWriters = sync.Pool{New: func() any { w, _ := zlib.NewWriterLevel(nil, httpLevel); return w }}
	// Compressors are large (about 1 MB at the default level): shared by all connections.
	flateWriters = sync.Pool{New: func() any { w, _ := flate.NewWriter(nil, deflateLevel); return w }}
	scratchBufs  = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

func putScratch(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		b.Reset()
		scratchBufs.Put(b)
	}
}

// httpEncoding is the Content-Encoding of a polling response.
type httpEncoding uint8

const (
	encIdentity httpEncoding = iota
	encGzip
	encDeflate
)

var encodingNames = [...]string{encGzip: "gzip", encDeflate: "deflate"}

// acceptEncoding chooses gzip or deflate for the request's Accept-Encoding values as Node's
// accepts(req).encodings(["gzip", "deflate"]) does (negotiator): the highest q, an exact name over
// "*", then the client's order, then gzip; q=0 refuses. encIdentity when neither is acceptable.
func acceptEncoding(values []string) httpEncoding {
	type prio struct {
		s, o int // specificity (exact 1, "*" 0) and the entry's index in the header
		q    float64
	}
	best := [2]prio{{o: -1}, {o: -1}} // gzip, deflate
	o := 0
	for _, v := range values {
		for entry := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(entry, ";")
			if name = strings.TrimSpace(name); name == "" {
				continue
			}
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && k == "q" {
					var err error
					if q, err = strconv.ParseFloat(val, 64); err != nil {
						q = 0 // NaN in Node: never acceptable
					}
				}
			}
			for i, enc := range [2]string{"gzip", "deflate"} {
				s := 0
				switch {
				case strings.EqualFold(name, enc):
					s = 1
				case name != "*":
					continue
				}
				b := best[i]
				if b.s < s || b.s == s && (b.q < q || b.q == q && b.o < o) {
					best[i] = prio{s: s, o: o, q: q}
				}
			}
			o++
		}
	}
	g, d := best[0], best[1]
	switch {
	case g.q <= 0 && d.q <= 0:
		return encIdentity
	case d.q <= 0:
		return encGzip
	case g.q <= 0:
		return encDeflate
	case d.q > g.q, d.q == g.q && d.s > g.s, d.q == g.q && d.s == g.s && d.o < g.o:
		return encDeflate
	}
	return encGzip
}

// compressPayload writes the polling payload of msgs, compressed with enc, to dst.
func compressPayload(dst *bytes.Buffer, enc httpEncoding, msgs []*Message) {
	compressTo(dst, enc, func(zw io.Writer) {
		for i, m := range msgs {
			if i > 0 {
				_, _ = zw.Write(separator)
			}
			_, _ = zw.Write(m.polling()) // a bytes.Buffer does not fail
		}
	})
}

// compressTo writes what write writes, compressed with enc by a pooled writer, to dst.
func compressTo(dst *bytes.Buffer, enc httpEncoding, write func(io.Writer)) {
	pool := &gzipWriters
	if enc == encDeflate {
		pool = &zlibWriters
	}
	zw := pool.Get().(interface { // *gzip.Writer or *zlib.Writer
		io.WriteCloser
		Reset(io.Writer)
	})
	zw.Reset(dst)
	write(zw)
	_ = zw.Close()
	zw.Reset(io.Discard) // the pool must not keep dst
	pool.Put(zw)
}

// deflateParams is the permessage-deflate response: no context takeover either way (see
// Compression.PerMessageDeflate); the client's window size is accepted, whatever it is.
var deflateParams = wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}

// deflateCount counts the messages compressed for permessage-deflate (tests).
var deflateCount atomic.Int64

// syncTail ends a sync flush: RFC 7692 7.2.1 strips it from a message, 7.2.2 appends it back.
var syncTail = []byte{0, 0, 0xff, 0xff}

// deflateFrame returns the compressed frame (RSV1 set) of a message with payload p, or nil
// when compressing does not make it smaller.
func deflateFrame(op ws.OpCode, p []byte) []byte {
	deflateCount.Add(1)
	buf := scratchBufs.Get().(*bytes.Buffer)
	defer putScratch(buf)
	fw := flateWriters.Get().(*flate.Writer)
	fw.Reset(buf) // a fresh state per message: server_no_context_takeover
	_, _ = fw.Write(p)
	_ = fw.Flush()
	fw.Reset(io.Discard)
	flateWriters.Put(fw)
	z := buf.Bytes()
	if !bytes.HasSuffix(z, syncTail) {
		return nil // cannot happen with compress/flate
	}
	z = z[:len(z)-len(syncTail)]
	h := ws.Header{Fin: true, Rsv: ws.Rsv(true, false, false), OpCode: op, Length: int64(len(z))}
	hs := ws.HeaderSize(h)
	if hs+len(z) >= len(p) {
		return nil
	}
	w := sliceWriter{b: make([]byte, 0, hs+len(z))} // exact: it may be kept for recovery
	_ = ws.WriteHeader(&w, h)
	return append(w.b, z...)
}

// inflateTail is appended to a compressed message: the sync flush tail it was sent without,
// then an empty final stored block, so that the reader ends with io.EOF.
var inflateTail = [...]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}

// inflater is a pooled flate reader (its window and tables are large, and client_no_context_takeover
// lets every message start afresh).
type inflater struct {
	fr  io.ReadCloser
	src tailReader
}

var inflaters = sync.Pool{New: func() any {
	z := new(inflater)
	z.fr = flate.NewReader(&z.src)
	return z
}}

// tailReader reads p, then inflateTail. It is an io.ByteReader, so flate does not add a bufio.
type tailReader struct {
	p []byte
	i int // bytes read of p and then of the tail
}

func (t *tailReader) Read(b []byte) (int, error) {
	if t.i < len(t.p) {
		n := copy(b, t.p[t.i:])
		t.i += n
		return n, nil
	}
	j := t.i - len(t.p)
	if j >= len(inflateTail) {
		return 0, io.EOF
	}
	n := copy(b, inflateTail[j:])
	t.i += n
	return n, nil
}

func (t *tailReader) ReadByte() (byte, error) {
	var b [1]byte
	if _, err := t.Read(b[:]); err != nil {
		return 0, err
	}
	return b[0], nil
}

// inflateBufs hold inflated messages until they are handled.
var inflateBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// inflate decompresses the message p into *dst (from inflateBufs), producing at most limit+1
// bytes: errTooBig when the message inflates beyond limit, errBadDeflate when p is not valid.
func inflate(dst *[]byte, p []byte, limit int64) ([]byte, error) {
	z := inflaters.Get().(*inflater)
	defer func() {
		z.src = tailReader{}
		inflaters.Put(z)
	}()
	z.src = tailReader{p: p}
	if err := z.fr.(flate.Resetter).Reset(&z.src, nil); err != nil {
		return nil, errBadDeflate
	}
	out := (*dst)[:0]
	defer func() { *dst = out }() // the grown buffer goes back to the pool with the message
	for {
		end := int(min(int64(cap(out)), limit+1)) // never more than limit+1: a bomb stops there
		if len(out) == end {
			if int64(len(out)) > limit {
				return nil, errTooBig
			}
			nb := make([]byte, len(out), min(int64(max(2*cap(out), 4<<10)), limit+1))
			copy(nb, out)
			out = nb
			continue
		}
		n, err := z.fr.Read(out[len(out):end])
		out = out[:len(out)+n]
		switch {
		case int64(len(out)) > limit:
			return nil, errTooBig
		case err == io.EOF:
			return out, nil
		case err != nil:
			return nil, errBadDeflate
		}
	}
}
