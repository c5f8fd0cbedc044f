package middleware

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/switchboard/switchboard/internal/sio"
)

// Codes and messages of connection refusals (see the contract).
const (
	CodeLimitConnections = "limit_connections"
	msgTooMany           = "Too many connections"
)

// Auth is the connect middleware that authenticates a connection with v.
// allowQuery also accepts the token from the ?token= query parameter.
func Auth(v *Verifier, allowQuery bool) sio.ConnectFunc {
	return func(_ context.Context, h *sio.Handshake) error {
		id, err := v.Verify(ExtractToken(h.Auth, h.Header, h.Query, allowQuery))
		if err != nil {
			return err
		}
		// A resumed session must come back as the same user.
		if h.Recovered && h.Previous != nil && h.Previous.ID != "" && h.Previous.ID != id.UserID {
			return &sio.Error{Code: CodeTokenInvalid, Message: "Invalid token"}
		}
		h.User = &sio.User{ID: id.UserID, Name: id.Name, Rooms: id.Rooms}
		return nil
	}
}

// ConnCounter counts connections per user (adapter.Presence is one).
type ConnCounter interface {
	AddConnection(ctx context.Context, userID, connID string, limit int) (bool, error)
	RemoveConnection(ctx context.Context, userID, connID string) error
}

// Limits is the connect middleware for MAX_CONNECTIONS (per node, counted
// by nodeConns, which includes the connection being checked) and
// MAX_CONNECTIONS_PER_USER (counted by users). Run it after Auth.
func Limits(maxPerNode int, nodeConns func() int, maxPerUser int, users ConnCounter) sio.ConnectFunc {
	return func(ctx context.Context, h *sio.Handshake) error {
		if maxPerNode > 0 && nodeConns() > maxPerNode {
			return &sio.Error{Code: CodeLimitConnections, Message: msgTooMany}
		}
		if users == nil || h.User == nil {
			return nil
		}
		userID, connID := h.User.ID, randomID()
		ok, err := users.AddConnection(ctx, userID, connID, maxPerUser)
		if err != nil {
			return err
		}
		if !ok {
			return &sio.Error{Code: CodeLimitConnections, Message: msgTooMany}
		}
		h.OnClose(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = users.RemoveConnection(ctx, userID, connID)
		})
		return nil
	}
}

// RateLimit is the interceptor for RATE_LIMIT/RATE_BURST: events beyond the
// bucket get rate_limited; a connection refused more than disconnectAfter
// times in a row is disconnected. onDisconnect (may be nil) counts those.
func RateLimit(rate float64, burst, disconnectAfter int, onDisconnect func()) sio.Interceptor {
	if rate <= 0 {
		return func(context.Context, *sio.Conn, string) error { return nil }
	}
	type key struct{}
	return func(_ context.Context, c *sio.Conn, _ string) error {
		l, _ := c.Value(key{}).(*RateLimiter)
		if l == nil {
			l = NewRateLimiter(rate, burst)
			c.SetValue(key{}, l)
		}
		ok, refused := l.Allow(time.Now())
		if ok {
			return nil
		}
		if refused > disconnectAfter {
			if onDisconnect != nil {
				onDisconnect()
			}
			c.Disconnect()
		}
		return &sio.Error{Code: sio.CodeRateLimited, Message: "too many events: slow down"}
	}
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
