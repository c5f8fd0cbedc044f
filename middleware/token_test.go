package middleware

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"
)

func TestExtractToken(t *testing.T) {
	bearer := func(v string) http.Header { return http.Header{"Authorization": {v}} }
	q := url.Values{"token": {"from-query"}}
	tests := []struct {
		name       string
		auth       map[string]any
		header     http.Header
		query      url.Values
		allowQuery bool
		want       string
	}{
		{"nothing", nil, nil, nil, true, ""},
		{"auth payload", map[string]any{"token": "from-auth"}, nil, nil, false, "from-auth"},
		{"auth beats header and query", map[string]any{"token": "from-auth"}, bearer("Bearer from-header"), q, true, "from-auth"},
		{"header beats query", nil, bearer("Bearer from-header"), q, true, "from-header"},
		{"empty auth token falls through", map[string]any{"token": ""}, bearer("Bearer from-header"), nil, false, "from-header"},
		{"non-string auth token ignored", map[string]any{"token": 123}, bearer("Bearer from-header"), nil, false, "from-header"},
		{"scheme is case-insensitive", nil, bearer("bEaReR from-header"), nil, false, "from-header"},
		{"extra spaces", nil, bearer("  Bearer   from-header  "), nil, false, "from-header"},
		{"basic scheme ignored", nil, bearer("Basic dXNlcjpwYXNz"), nil, false, ""},
		{"bearer without token", nil, bearer("Bearer"), q, true, "from-query"},
		{"bearer with blank token", nil, bearer("Bearer   "), nil, false, ""},
		{"query when allowed", nil, nil, q, true, "from-query"},
		{"query ignored by default", nil, nil, q, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExtractToken(tt.auth, tt.header, tt.query, tt.allowQuery); got != tt.want {
				t.Errorf("ExtractToken = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMintHS256RoundTrip(t *testing.T) {
	secret := []byte("mint-secret")
	tests := []struct {
		name       string
		sub, dname string
		ttl        time.Duration
		rooms      []string
		requireExp bool
		wantErr    bool
		wantName   string
	}{
		{"full", "alice", "Alice", time.Hour, []string{"team-*"}, true, false, "Alice"},
		{"no name", "bob", "", time.Hour, nil, true, false, "bob"},
		{"empty rooms", "carol", "", time.Hour, []string{}, true, false, "carol"},
		{"no ttl, exp optional", "dave", "", 0, nil, false, false, "dave"},
		{"no ttl, exp required", "dave", "", 0, nil, true, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := MintHS256(secret, tt.sub, tt.dname, tt.ttl, tt.rooms)
			if err != nil {
				t.Fatalf("MintHS256: %v", err)
			}
			v := mustVerifier(t, AuthConfig{Secret: secret, RequireExp: tt.requireExp})
			id, err := v.Verify(tok)
			if tt.wantErr {
				checkCode(t, err, CodeTokenInvalid)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.UserID != tt.sub || id.Name != tt.wantName || !slices.Equal(id.Rooms, tt.rooms) ||
				(id.Rooms == nil) != (tt.rooms == nil) {
				t.Errorf("identity = %+v", id)
			}
			if tt.ttl > 0 {
				if d := time.Until(id.ExpiresAt); d <= 0 || d > tt.ttl {
					t.Errorf("ExpiresAt in %v, want within %v", d, tt.ttl)
				}
			} else if !id.ExpiresAt.IsZero() {
				t.Errorf("ExpiresAt = %v, want zero", id.ExpiresAt)
			}
		})
	}
}

func TestMintHS256EmptySecret(t *testing.T) {
	if _, err := MintHS256(nil, "alice", "", time.Hour, nil); err == nil {
		t.Fatal("MintHS256 with no secret succeeded")
	}
}
