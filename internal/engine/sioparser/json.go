package sioparser

import (
	"encoding/binary"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small JSON scanner (RFC 8259, the grammar JSON.parse accepts) used to validate
// payloads without decoding them, with a nesting bound and, for binary packets, a check of the
// attachment placeholders; plus JSON string quoting and unquoting compatible with JSON.stringify.

// scanner validates one JSON text. The zero value is not usable: set maxDepth.
type scanner struct {
	data     []byte
	maxDepth int
	// placeholders: when true, every object whose last "_placeholder" member is true must have a
	// "num" member that is an integer in [0, attachments) — socket.io-parser's reconstructPacket rule.
	placeholders bool
	attachments  int
	err          error // syntax or depth error: scanning stops
	// placeholderErr records a bad placeholder without stopping the scan, so that a syntax error
	// later in the text wins, as in socket.io-parser (JSON.parse fails before reconstruction runs).
	placeholderErr error
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(d []byte, i int) int {
	for i < len(d) && isSpace(d[i]) {
		i++
	}
	return i
}

// fail records err (the first one wins) and returns an index past the end, which stops every loop.
func (s *scanner) fail(err error) int {
	if s.err == nil {
		s.err = err
	}
	return len(s.data) + 1
}

// value scans the JSON value starting exactly at i (no leading space) at nesting depth depth and
// returns the index just after it. On error s.err is set and the returned index is > len(s.data).
func (s *scanner) value(i, depth int) int {
	d := s.data
	if i >= len(d) {
		return s.fail(ErrInvalidPayload)
	}
	switch c := d[i]; {
	case c == '{':
		return s.object(i, depth+1)
	case c == '[':
		return s.array(i, depth+1)
	case c == '"':
		end := scanString(d, i)
		if end < 0 {
			return s.fail(ErrInvalidPayload)
		}
		return end
	case c == '-' || (c >= '0' && c <= '9'):
		end := scanNumber(d, i)
		if end < 0 {
			return s.fail(ErrInvalidPayload)
		}
		return end
	case c == 't':
		return s.literal(i, "true")
	case c == 'f':
		return s.literal(i, "false")
	case c == 'n':
		return s.literal(i, "null")
	}
	return s.fail(ErrInvalidPayload)
}

func (s *scanner) literal(i int, lit string) int {
	if len(s.data)-i >= len(lit) && string(s.data[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return s.fail(ErrInvalidPayload)
}

func (s *scanner) array(i, depth int) int {
	if depth > s.maxDepth {
		return s.fail(ErrTooDeep)
	}
	d := s.data
	i = skipSpace(d, i+1)
	if i < len(d) && d[i] == ']' {
		return i + 1
	}
	for i < len(d) {
		i = s.value(i, depth)
		i = skipSpace(d, i)
		if i >= len(d) {
			break
		}
		switch d[i] {
		case ',':
			i = skipSpace(d, i+1)
		case ']':
			return i + 1
		default:
			return s.fail(ErrInvalidPayload)
		}
	}
	return s.fail(ErrInvalidPayload)
}

func (s *scanner) object(i, depth int) int {
	if depth > s.maxDepth {
		return s.fail(ErrTooDeep)
	}
	d := s.data
	i = skipSpace(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1
	}
	isPlaceholder := false
	numStart, numEnd := -1, -1
	for i < len(d) {
		if d[i] != '"' {
			return s.fail(ErrInvalidPayload)
		}
		keyStart := i
		i = scanString(d, i)
		if i < 0 {
			return s.fail(ErrInvalidPayload)
		}
		keyEnd := i
		i = skipSpace(d, i)
		if i >= len(d) || d[i] != ':' {
			return s.fail(ErrInvalidPayload)
		}
		i = skipSpace(d, i+1)
		valStart := i
		i = s.value(i, depth)
		if s.err != nil {
			return i
		}
		if s.placeholders {
			// JSON.parse keeps the last of duplicate members, and so do we.
			switch {
			case stringEquals(d[keyStart:keyEnd], "_placeholder"):
				isPlaceholder = string(d[valStart:i]) == "true"
			case stringEquals(d[keyStart:keyEnd], "num"):
				numStart, numEnd = valStart, i
			}
		}
		i = skipSpace(d, i)
		if i >= len(d) {
			break
		}
		switch d[i] {
		case ',':
			i = skipSpace(d, i+1)
		case '}':
			if isPlaceholder && !s.validNum(numStart, numEnd) {
				s.placeholderErr = ErrIllegalPlaceholder
			}
			return i + 1
		default:
			return s.fail(ErrInvalidPayload)
		}
	}
	return s.fail(ErrInvalidPayload)
}

// validNum reports whether the "num" member spanning data[start:end] is a JSON number whose value is
// an integer in [0, attachments). socket.io-parser requires typeof num === "number" and
// 0 <= num < buffers.length; it would also accept a fraction, which indexes nothing (undefined): that
// is refused here.
func (s *scanner) validNum(start, end int) bool {
	if start < 0 {
		return false
	}
	c := s.data[start]
	if c != '-' && (c < '0' || c > '9') {
		return false
	}
	f, err := strconv.ParseFloat(string(s.data[start:end]), 64)
	return err == nil && f >= 0 && f < float64(s.attachments) && f == float64(int64(f))
}

// scanString scans the JSON string starting at d[i] == '"' and returns the index after its closing
// quote, or -1. Bytes >= 0x80 are accepted as they are (JSON.parse sees text already decoded from
// UTF-8 by the transport); control characters must be escaped.
func scanString(d []byte, i int) int {
	i++
	for {
		// Skip eight plain bytes at a time (no '"', '\\' or control character among them), then
		// plain bytes one at a time up to the special one.
		for i+8 <= len(d) {
			x := binary.LittleEndian.Uint64(d[i:])
			if hasLess(x, 0x20)|hasZero(x^(lsb*'"'))|hasZero(x^(lsb*'\\')) != 0 {
				break
			}
			i += 8
		}
		for i < len(d) && d[i] >= 0x20 && d[i] != '"' && d[i] != '\\' {
			i++
		}
		if i >= len(d) {
			return -1
		}
		switch d[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= len(d) {
				return -1
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) || !isHex(d[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// hasZero is non-zero iff one of the bytes of x is zero; hasLess iff one is < n (n <= 128). Both may
// flag more bytes than those (above a true one), never fewer: callers only use them as a filter.
func hasZero(x uint64) uint64         { return (x - lsb) &^ x & msb }
func hasLess(x uint64, n byte) uint64 { return (x - lsb*uint64(n)) &^ x & msb }

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// scanNumber scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at d[i] and returns the index after
// it, or -1.
func scanNumber(d []byte, i int) int {
	if i < len(d) && d[i] == '-' {
		i++
	}
	if i >= len(d) {
		return -1
	}
	switch c := d[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i = skipDigits(d, i+1)
	default:
		return -1
	}
	if i < len(d) && d[i] == '.' {
		j := skipDigits(d, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := skipDigits(d, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(d []byte, i int) int {
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	return i
}

// validJSON reports whether data is exactly one JSON value, optionally surrounded by JSON white
// space, nested at most maxDepth deep.
func validJSON(data []byte, maxDepth int) error {
	s := scanner{data: data, maxDepth: maxDepth}
	i := s.value(skipSpace(data, 0), 0)
	if s.err != nil {
		return s.err
	}
	if skipSpace(data, i) != len(data) {
		return ErrInvalidPayload
	}
	return nil
}

// stringEquals reports whether the JSON string literal lit (quotes included, already scanned) denotes
// s. Literals without escapes are compared in place; others are unquoted first.
func stringEquals(lit []byte, s string) bool {
	body := lit[1 : len(lit)-1]
	if !hasBackslash(body) {
		return string(body) == s
	}
	return string(unquote(nil, lit)) == s
}

func hasBackslash(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// unquote appends the UTF-8 value of the JSON string literal lit (quotes included, already scanned,
// so well formed) to dst. Escaped lone surrogates, which UTF-8 cannot carry, become U+FFFD, as in
// encoding/json.
func unquote(dst, lit []byte) []byte {
	body := lit[1 : len(lit)-1]
	for i := 0; i < len(body); {
		c := body[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch e := body[i+1]; e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(body[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(body) && body[i] == '\\' && body[i+1] == 'u' {
					if r2 := hex4(body[i+2 : i+6]); utf16.DecodeRune(r, r2) != utf8.RuneError {
						dst = utf8.AppendRune(dst, utf16.DecodeRune(r, r2))
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// AppendString appends s to dst as a JSON string literal, escaped as JSON.stringify escapes it:
// '"', '\\' and control characters only (\b \f \n \r \t, others as \u00xx); everything else,
// including '<', '>', '&', U+2028 and U+2029, is written as is. Invalid UTF-8 is written as \ufffd
// (JSON.stringify cannot meet it; encoding/json does the same).
func AppendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
