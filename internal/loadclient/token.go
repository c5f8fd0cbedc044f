package loadclient

import (
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token signs an HS256 JWT with claims sub, name and exp (now + ttl).
func Token(secret []byte, sub, name string, ttl time.Duration) (string, error) {
	claims := jwt.MapClaims{"sub": sub, "name": name, "exp": time.Now().Add(ttl).Unix()}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
