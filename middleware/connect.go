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

// Limits is the connect middleware for MAX_CONNECTIONS (per node: the
// sessions that passed authentication, counted by nodeConns, not including
// the one being checked; checked on a session's first connect only) and
// MAX_CONNECTIONS_PER_USER (counted by users). Run it after Auth, so that
// sessions that never authenticate cannot use up the node's slots.
func Limits(maxPerNode int, nodeConns func() int, maxPerUser int, users ConnCounter) sio.ConnectFunc {
	return func(ctx context.Context, h *sio.Handshake) error {
		if maxPerNode > 0 && h.Pending && nodeConns() >= maxPerNode {
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

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
