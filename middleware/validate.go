package middleware

import "strings"

// maxRoomIDLen is the contract's room id limit.
const maxRoomIDLen = 128

// ValidRoomID reports whether id is 1-128 chars of A-Z a-z 0-9 _ . : -.
func ValidRoomID(id string) bool {
	if len(id) < 1 || len(id) > maxRoomIDLen {
		return false
	}
	// Byte-wise is exact: every allowed char is ASCII, and any byte of a
	// multi-byte rune is outside the set.
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// ReservedRoom reports whether id is a server-owned "user:*" room.
func ReservedRoom(id string) bool {
	return strings.HasPrefix(id, "user:")
}

// RoomAllowed reports whether room matches one of patterns ('*' = any run); nil patterns allow everything.
func RoomAllowed(patterns []string, room string) bool {
	// nil is "no rooms claim"; an empty non-nil list is a claim allowing nothing.
	if patterns == nil {
		return true
	}
	for _, p := range patterns {
		if globMatch(p, room) {
			return true
		}
	}
	return false
}

// globMatch matches s against p where '*' matches any run of bytes. It
// backtracks only to the latest star, so it runs in O(len(p)*len(s)) at worst
// with no allocation, unlike compiling a regexp per check.
func globMatch(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0 // last '*' seen in p, and the s position it is matched up to
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			// Let the last star swallow one more byte and retry after it.
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
