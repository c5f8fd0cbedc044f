package middleware

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ExtractToken returns the first non-empty token from auth["token"], a Bearer Authorization header, then ?token= when allowQuery.
func ExtractToken(auth map[string]any, header http.Header, query url.Values, allowQuery bool) string {
	// The auth payload is what socket.io-client sends; a non-string there is
	// ignored rather than stringified.
	if tok, ok := auth["token"].(string); ok && tok != "" {
		return tok
	}
	if scheme, tok, ok := strings.Cut(strings.TrimSpace(header.Get("Authorization")), " "); ok &&
		strings.EqualFold(scheme, "Bearer") {
		if tok = strings.TrimSpace(tok); tok != "" {
			return tok
		}
	}
	// Query tokens end up in access logs, hence opt-in.
	if allowQuery {
		return query.Get("token")
	}
	return ""
}

// MintHS256 signs a token for scripts and demos (the token command and the dev-token endpoint).
func MintHS256(secret []byte, sub, name string, ttl time.Duration, rooms []string) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("mint: empty secret")
	}
	now := time.Now()
	claims := jwt.MapClaims{"sub": sub, "iat": jwt.NewNumericDate(now)}
	if name != "" {
		claims["name"] = name
	}
	if ttl > 0 {
		claims["exp"] = jwt.NewNumericDate(now.Add(ttl))
	}
	if rooms != nil {
		claims["rooms"] = rooms
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
