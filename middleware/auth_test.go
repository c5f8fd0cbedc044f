package middleware

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/internal/sio"
)

// testKeys holds one key pair per supported family, generated per test run.
type testKeys struct {
	secret                       []byte
	rsa                          *rsa.PrivateKey
	ec256, ec384, ec521          *ecdsa.PrivateKey
	ed                           ed25519.PrivateKey
	rsaPEM, rsaPKCS1PEM          []byte
	ec256PEM, ec384PEM, ec521PEM []byte
	edPEM                        []byte
}

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	k := &testKeys{secret: []byte("0123456789abcdef0123456789abcdef")}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	k.ec256 = genEC(t, elliptic.P256())
	k.ec384 = genEC(t, elliptic.P384())
	k.ec521 = genEC(t, elliptic.P521())
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	k.rsaPEM = pkixPEM(t, &k.rsa.PublicKey)
	k.rsaPKCS1PEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	k.ec256PEM = pkixPEM(t, &k.ec256.PublicKey)
	k.ec384PEM = pkixPEM(t, &k.ec384.PublicKey)
	k.ec521PEM = pkixPEM(t, &k.ec521.PublicKey)
	k.edPEM = pkixPEM(t, k.ed.Public())
	return k
}

func genEC(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pkixPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claimsAt returns valid claims for user alice, with extra entries applied
// (a nil value deletes the claim).
func claimsAt(extra jwt.MapClaims) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func mustVerifier(t *testing.T, cfg AuthConfig) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func TestVerifyAcceptsEveryAlgorithm(t *testing.T) {
	k := newTestKeys(t)
	secretCfg := AuthConfig{Secret: k.secret, Leeway: 30 * time.Second, RequireExp: true}
	pemCfg := func(p []byte) AuthConfig {
		return AuthConfig{PublicKeyPEM: p, Leeway: 30 * time.Second, RequireExp: true}
	}
	bothCfg := AuthConfig{Secret: k.secret, PublicKeyPEM: k.rsaPEM}

	tests := []struct {
		name   string
		cfg    AuthConfig
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", secretCfg, jwt.SigningMethodHS256, k.secret},
		{"HS384", secretCfg, jwt.SigningMethodHS384, k.secret},
		{"HS512", secretCfg, jwt.SigningMethodHS512, k.secret},
		{"RS256", pemCfg(k.rsaPEM), jwt.SigningMethodRS256, k.rsa},
		{"RS384", pemCfg(k.rsaPEM), jwt.SigningMethodRS384, k.rsa},
		{"RS512", pemCfg(k.rsaPEM), jwt.SigningMethodRS512, k.rsa},
		{"RS256 with PKCS1 PEM", pemCfg(k.rsaPKCS1PEM), jwt.SigningMethodRS256, k.rsa},
		{"ES256", pemCfg(k.ec256PEM), jwt.SigningMethodES256, k.ec256},
		{"ES384", pemCfg(k.ec384PEM), jwt.SigningMethodES384, k.ec384},
		{"ES512", pemCfg(k.ec521PEM), jwt.SigningMethodES512, k.ec521},
		{"EdDSA", pemCfg(k.edPEM), jwt.SigningMethodEdDSA, k.ed},
		{"both keys, HS256", bothCfg, jwt.SigningMethodHS256, k.secret},
		{"both keys, RS256", bothCfg, jwt.SigningMethodRS256, k.rsa},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := mustVerifier(t, tt.cfg)
			id, err := v.Verify(sign(t, tt.method, tt.key, claimsAt(nil)))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.UserID != "alice" || id.Name != "alice" || id.Rooms != nil || id.ExpiresAt.IsZero() {
				t.Errorf("identity = %+v", id)
			}
		})
	}
}

func TestVerifyRefusals(t *testing.T) {
	k := newTestKeys(t)
	now := time.Now()
	secretCfg := AuthConfig{Secret: k.secret, Leeway: 30 * time.Second, RequireExp: true}
	rsaCfg := AuthConfig{PublicKeyPEM: k.rsaPEM, Leeway: 30 * time.Second}
	ecCfg := AuthConfig{PublicKeyPEM: k.ec256PEM, Leeway: 30 * time.Second}
	bothCfg := AuthConfig{Secret: k.secret, PublicKeyPEM: k.rsaPEM, Leeway: 30 * time.Second}
	issAudCfg := AuthConfig{Secret: k.secret, Issuer: "https://issuer", Audience: "switchboard", Leeway: 30 * time.Second}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, k.secret, c) }
	noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsAt(nil))
	valid := hs(claimsAt(nil))
	expired := claimsAt(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()})

	tests := []struct {
		name  string
		cfg   AuthConfig
		token string
		code  string
	}{
		{"empty token", secretCfg, "", CodeTokenMissing},
		{"expired", secretCfg, hs(expired), CodeTokenExpired},
		{"expired with exp required off", AuthConfig{Secret: k.secret}, hs(expired), CodeTokenExpired},
		{"expired and bad signature", secretCfg, sign(t, jwt.SigningMethodHS256, []byte("other-secret"), expired), CodeTokenInvalid},
		{"expired and wrong issuer", issAudCfg, hs(claimsAt(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix(), "iss": "evil", "aud": "switchboard"})), CodeTokenInvalid},
		{"expired and bad sub", secretCfg, hs(claimsAt(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix(), "sub": ""})), CodeTokenInvalid},
		{"bad signature", secretCfg, sign(t, jwt.SigningMethodHS256, []byte("other-secret"), claimsAt(nil)), CodeTokenInvalid},
		{"tampered payload", secretCfg, tamper(valid), CodeTokenInvalid},
		{"malformed: one segment", secretCfg, "not-a-jwt", CodeTokenInvalid},
		{"malformed: garbage segments", secretCfg, "a.b.c", CodeTokenInvalid},
		{"malformed: sub is a number", secretCfg, hs(claimsAt(jwt.MapClaims{"sub": 42})), CodeTokenInvalid},
		{"alg none with secret", secretCfg, noneTok, CodeTokenInvalid},
		{"alg none with public key", rsaCfg, noneTok, CodeTokenInvalid},
		{"HS256 signed with PEM bytes, only public key", rsaCfg, sign(t, jwt.SigningMethodHS256, k.rsaPEM, claimsAt(nil)), CodeTokenInvalid},
		{"HS256 signed with PEM bytes, both keys", bothCfg, sign(t, jwt.SigningMethodHS256, k.rsaPEM, claimsAt(nil)), CodeTokenInvalid},
		{"RS256 with only a secret", secretCfg, sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(nil)), CodeTokenInvalid},
		{"ES256 with an RSA key", rsaCfg, sign(t, jwt.SigningMethodES256, k.ec256, claimsAt(nil)), CodeTokenInvalid},
		{"RS256 with an EC key", ecCfg, sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(nil)), CodeTokenInvalid},
		{"ES384 with a P-256 key", ecCfg, sign(t, jwt.SigningMethodES384, k.ec384, claimsAt(nil)), CodeTokenInvalid},
		{"PS256 with an RSA key", rsaCfg, sign(t, jwt.SigningMethodPS256, k.rsa, claimsAt(nil)), CodeTokenInvalid},
		{"RS256 signed by another key", rsaCfg, sign(t, jwt.SigningMethodRS256, mustRSA(t), claimsAt(nil)), CodeTokenInvalid},
		{"nbf in the future", secretCfg, hs(claimsAt(jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()})), CodeTokenInvalid},
		{"iat in the future", secretCfg, hs(claimsAt(jwt.MapClaims{"iat": now.Add(time.Minute).Unix()})), CodeTokenInvalid},
		{"wrong issuer", issAudCfg, hs(claimsAt(jwt.MapClaims{"iss": "evil", "aud": "switchboard"})), CodeTokenInvalid},
		{"missing issuer", issAudCfg, hs(claimsAt(jwt.MapClaims{"aud": "switchboard"})), CodeTokenInvalid},
		{"wrong audience", issAudCfg, hs(claimsAt(jwt.MapClaims{"iss": "https://issuer", "aud": "other"})), CodeTokenInvalid},
		{"missing audience", issAudCfg, hs(claimsAt(jwt.MapClaims{"iss": "https://issuer"})), CodeTokenInvalid},
		{"missing exp when required", secretCfg, hs(claimsAt(jwt.MapClaims{"exp": nil})), CodeTokenInvalid},
		{"missing sub", secretCfg, hs(claimsAt(jwt.MapClaims{"sub": nil})), CodeTokenInvalid},
		{"empty sub", secretCfg, hs(claimsAt(jwt.MapClaims{"sub": ""})), CodeTokenInvalid},
		{"sub 129 chars", secretCfg, hs(claimsAt(jwt.MapClaims{"sub": strings.Repeat("a", 129)})), CodeTokenInvalid},
		{"name not a string", secretCfg, hs(claimsAt(jwt.MapClaims{"name": 7})), CodeTokenInvalid},
		{"name null", secretCfg, hs(claimsAt(jwt.MapClaims{"name": jsonNull{}})), CodeTokenInvalid},
		{"name 129 chars", secretCfg, hs(claimsAt(jwt.MapClaims{"name": strings.Repeat("é", 129)})), CodeTokenInvalid},
		{"rooms not a list", secretCfg, hs(claimsAt(jwt.MapClaims{"rooms": "team-*"})), CodeTokenInvalid},
		{"rooms null", secretCfg, hs(claimsAt(jwt.MapClaims{"rooms": jsonNull{}})), CodeTokenInvalid},
		{"rooms with a number", secretCfg, hs(claimsAt(jwt.MapClaims{"rooms": []any{"a", 1}})), CodeTokenInvalid},
		{"rooms with a null", secretCfg, hs(claimsAt(jwt.MapClaims{"rooms": []any{"a", nil}})), CodeTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mustVerifier(t, tt.cfg).Verify(tt.token)
			checkCode(t, err, tt.code)
		})
	}
}

// jsonNull marshals to an explicit JSON null, which MapClaims deletion cannot express.
type jsonNull struct{}

func (jsonNull) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

func mustRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// tamper swaps the payload for one claiming another user, keeping the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory"}`))
	return strings.Join(parts, ".")
}

func checkCode(t *testing.T, err error, code string) {
	t.Helper()
	want := map[string]string{
		CodeTokenMissing: "Authentication required",
		CodeTokenInvalid: "Invalid token",
		CodeTokenExpired: "Token expired",
	}[code]
	var se *sio.Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want *sio.Error %s", err, err, code)
	}
	if se.Code != code || se.Message != want {
		t.Fatalf("err = %q/%q, want %q/%q", se.Code, se.Message, code, want)
	}
}

func TestVerifyLeeway(t *testing.T) {
	secret := []byte("leeway-secret")
	v := mustVerifier(t, AuthConfig{Secret: secret, Leeway: 30 * time.Second, RequireExp: true})
	now := time.Now()
	tests := []struct {
		name  string
		extra jwt.MapClaims
		code  string // empty when accepted
	}{
		{"exp 10s ago", jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()}, ""},
		{"exp 60s ago", jwt.MapClaims{"exp": now.Add(-60 * time.Second).Unix()}, CodeTokenExpired},
		{"nbf 10s ahead", jwt.MapClaims{"nbf": now.Add(10 * time.Second).Unix()}, ""},
		{"nbf 60s ahead", jwt.MapClaims{"nbf": now.Add(60 * time.Second).Unix()}, CodeTokenInvalid},
		{"iat 10s ahead", jwt.MapClaims{"iat": now.Add(10 * time.Second).Unix()}, ""},
		{"iat 60s ahead", jwt.MapClaims{"iat": now.Add(60 * time.Second).Unix()}, CodeTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, claimsAt(tt.extra)))
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			checkCode(t, err, tt.code)
		})
	}
}

func TestVerifyIdentity(t *testing.T) {
	secret := []byte("identity-secret")
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	long := strings.Repeat("é", 128) // 128 chars, 256 bytes: the limit counts characters
	tests := []struct {
		name  string
		cfg   AuthConfig
		extra jwt.MapClaims
		want  Identity
	}{
		{"defaults", AuthConfig{}, nil, Identity{UserID: "alice", Name: "alice", ExpiresAt: exp}},
		{"name", AuthConfig{}, jwt.MapClaims{"name": "Alice"}, Identity{UserID: "alice", Name: "Alice", ExpiresAt: exp}},
		{"empty name", AuthConfig{}, jwt.MapClaims{"name": ""}, Identity{UserID: "alice", Name: "alice", ExpiresAt: exp}},
		{"128-char sub and name", AuthConfig{}, jwt.MapClaims{"sub": long, "name": long}, Identity{UserID: long, Name: long, ExpiresAt: exp}},
		{"rooms", AuthConfig{}, jwt.MapClaims{"rooms": []string{"team-*", "lobby"}}, Identity{UserID: "alice", Name: "alice", Rooms: []string{"team-*", "lobby"}, ExpiresAt: exp}},
		{"empty rooms", AuthConfig{}, jwt.MapClaims{"rooms": []string{}}, Identity{UserID: "alice", Name: "alice", Rooms: []string{}, ExpiresAt: exp}},
		{"no exp", AuthConfig{}, jwt.MapClaims{"exp": nil}, Identity{UserID: "alice", Name: "alice"}},
		{"issuer and audience", AuthConfig{Issuer: "iss", Audience: "aud"}, jwt.MapClaims{"iss": "iss", "aud": []string{"x", "aud"}}, Identity{UserID: "alice", Name: "alice", ExpiresAt: exp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Secret = secret
			c := claimsAt(jwt.MapClaims{"exp": exp.Unix()})
			for k, v := range tt.extra {
				if v == nil {
					delete(c, k)
				} else {
					c[k] = v
				}
			}
			got, err := mustVerifier(t, tt.cfg).Verify(sign(t, jwt.SigningMethodHS256, secret, c))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.UserID != tt.want.UserID || got.Name != tt.want.Name || !got.ExpiresAt.Equal(tt.want.ExpiresAt) ||
				!slices.Equal(got.Rooms, tt.want.Rooms) || (got.Rooms == nil) != (tt.want.Rooms == nil) {
				t.Errorf("identity = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewVerifierErrors(t *testing.T) {
	k := newTestKeys(t)
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(k.ec256)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  AuthConfig
	}{
		{"no keys", AuthConfig{Issuer: "iss"}},
		{"not PEM", AuthConfig{PublicKeyPEM: []byte("not a pem")}},
		{"garbage PUBLIC KEY", AuthConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})}},
		{"garbage RSA PUBLIC KEY", AuthConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: []byte("junk")})}},
		{"private key block", AuthConfig{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})}},
		{"P-224 curve", AuthConfig{PublicKeyPEM: pkixPEM(t, &genEC(t, elliptic.P224()).PublicKey)}},
		{"X25519 key", AuthConfig{PublicKeyPEM: pkixPEM(t, x.PublicKey())}},
		{"bad PEM even with a secret", AuthConfig{Secret: k.secret, PublicKeyPEM: []byte("junk")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, err := NewVerifier(tt.cfg); err == nil {
				t.Fatalf("NewVerifier = %v, want error", v)
			}
		})
	}
}
