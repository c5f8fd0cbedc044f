package middleware

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/internal/sio"
)

// Contract codes for a refused handshake (connect_error err.data.code).
const (
	CodeTokenMissing = "token_missing" // no token in any accepted source
	CodeTokenInvalid = "token_invalid" // bad signature, claims, algorithm or format
	CodeTokenExpired = "token_expired" // exp is past, beyond the leeway
)

// maxClaimLen bounds sub and name, per the contract.
const maxClaimLen = 128

// AuthConfig selects the keys and claim checks used by a Verifier.
type AuthConfig struct {
	Secret       []byte        // HMAC secret: enables HS256/HS384/HS512 when non-empty
	PublicKeyPEM []byte        // PEM public key: RSA -> RS*, ECDSA -> ES* (by curve), Ed25519 -> EdDSA
	Issuer       string        // required iss when non-empty
	Audience     string        // required aud when non-empty
	Leeway       time.Duration // clock skew allowed on exp, nbf and iat
	RequireExp   bool          // refuse tokens without exp
}

// Identity is the authenticated user carried by a verified token.
type Identity struct {
	UserID    string    // sub claim
	Name      string    // name claim, or UserID when absent or empty
	Rooms     []string  // rooms claim patterns; nil means unrestricted
	ExpiresAt time.Time // exp claim; zero when absent
}

// Verifier checks tokens against an AuthConfig; safe for concurrent use.
type Verifier struct {
	secret []byte
	pubKey any
	parser *jwt.Parser
}

// NewVerifier validates cfg and builds a Verifier; it fails when no key is configured or the PEM is unusable.
func NewVerifier(cfg AuthConfig) (*Verifier, error) {
	if len(cfg.Secret) == 0 && len(cfg.PublicKeyPEM) == 0 {
		return nil, errors.New("auth: neither a secret nor a public key is configured")
	}
	v := &Verifier{}
	var methods []string
	if len(cfg.Secret) > 0 {
		v.secret = slices.Clone(cfg.Secret)
		methods = append(methods, "HS256", "HS384", "HS512")
	}
	if len(cfg.PublicKeyPEM) > 0 {
		key, m, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		v.pubKey = key
		methods = append(methods, m...)
	}
	opts := []jwt.ParserOption{
		// Only the algorithms our keys allow: this is what stops alg:none and
		// HMAC-with-the-public-key confusion before any key is looked up.
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.RequireExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Verify checks token and returns its identity, or a *sio.Error with a contract code.
func (v *Verifier) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, sio.Errorf(CodeTokenMissing, "Authentication required")
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.key); err != nil {
		if onlyExpired(err) {
			return Identity{}, sio.Errorf(CodeTokenExpired, "Token expired")
		}
		return Identity{}, sio.Errorf(CodeTokenInvalid, "Invalid token")
	}
	id := Identity{UserID: c.Subject, Name: c.name, Rooms: c.rooms}
	if id.Name == "" {
		id.Name = id.UserID
	}
	if c.ExpiresAt != nil {
		id.ExpiresAt = c.ExpiresAt.Time
	}
	return id, nil
}

// key hands each algorithm family its own key only, so a token can never make
// us use the public key as an HMAC secret or vice versa.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if v.secret != nil {
			return v.secret, nil
		}
	case *jwt.SigningMethodRSA, *jwt.SigningMethodECDSA, *jwt.SigningMethodEd25519:
		if v.pubKey != nil {
			return v.pubKey, nil
		}
	}
	return nil, fmt.Errorf("no key for algorithm %s", t.Method.Alg())
}

// onlyExpired reports whether expiry is the sole reason err refused a token.
// Signature and format errors stop parsing before exp is looked at, so an
// expired verdict always comes from a genuinely signed token. Any other claim
// failure wins: a client told "expired" would just refresh and retry.
func onlyExpired(err error) bool {
	if !errors.Is(err, jwt.ErrTokenExpired) {
		return false
	}
	for _, e := range []error{
		jwt.ErrTokenNotValidYet,
		jwt.ErrTokenUsedBeforeIssued,
		jwt.ErrTokenInvalidIssuer,
		jwt.ErrTokenInvalidAudience,
		jwt.ErrTokenRequiredClaimMissing,
		errBadClaims,
	} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// errBadClaims marks a contract claim (sub, name, rooms) with a wrong type or size.
var errBadClaims = errors.New("bad sub, name or rooms claim")

// claims is the token body: registered claims plus the contract's own, kept
// raw so that wrong JSON types are refused instead of silently dropped.
type claims struct {
	jwt.RegisteredClaims
	Name  json.RawMessage `json:"name,omitempty"`
	Rooms json.RawMessage `json:"rooms,omitempty"`

	name  string
	rooms []string
}

// Validate is called by the jwt validator after the signature checks out.
func (c *claims) Validate() error {
	if n := utf8.RuneCountInString(c.Subject); n < 1 || n > maxClaimLen {
		return errBadClaims
	}
	if c.Name != nil {
		name, ok := jsonString(c.Name)
		if !ok || utf8.RuneCountInString(name) > maxClaimLen {
			return errBadClaims
		}
		c.name = name
	}
	if c.Rooms != nil {
		// A present but null or mistyped rooms claim fails closed: it must
		// never read as "unrestricted".
		var items []json.RawMessage
		if json.Unmarshal(c.Rooms, &items) != nil || items == nil {
			return errBadClaims
		}
		c.rooms = make([]string, 0, len(items))
		for _, raw := range items {
			room, ok := jsonString(raw)
			if !ok {
				return errBadClaims
			}
			c.rooms = append(c.rooms, room)
		}
	}
	return nil
}

// jsonString decodes raw as a JSON string; encoding/json would quietly turn a
// null into "", which we want to refuse.
func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if string(raw) == "null" || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}
