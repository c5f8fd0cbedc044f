// Package adapter holds the stores behind Switchboard's cluster-wide state:
// presence (who is in which room, with how many connections), per-user
// connection counts and message de-duplication. The memory implementations
// serve a single node; the Redis ones share the state between nodes.
package adapter

import (
	"context"
	"sort"
	"sync"
)

// Member is one user present in a room.
type Member struct {
	UserID      string `json:"userId"`
	Name        string `json:"name"`
	Connections int    `json:"connections"`
}

// Presence tracks room membership per user and connection counts per user.
type Presence interface {
	// Join records connection connID of the user in room. first is true when
	// it is the user's first connection in that room.
	Join(ctx context.Context, room, userID, name, connID string) (first bool, err error)
	// Leave removes connection connID from room. last is true when it was the
	// user's last connection in that room.
	Leave(ctx context.Context, room, userID, connID string) (last bool, err error)
	// Members lists the users in room, ordered by user id.
	Members(ctx context.Context, room string) ([]Member, error)
	// AddConnection counts connection connID for the user unless the user
	// already has limit connections (limit <= 0: no limit).
	AddConnection(ctx context.Context, userID, connID string, limit int) (ok bool, err error)
	// RemoveConnection forgets connection connID of the user.
	RemoveConnection(ctx context.Context, userID, connID string) error
}

// MemoryPresence is the single-node Presence.
type MemoryPresence struct {
	mu    sync.Mutex
	rooms map[string]map[string]*roomUser // room -> user id -> user
	conns map[string]map[string]struct{}  // user id -> connection ids
}

type roomUser struct {
	name  string
	conns map[string]struct{}
}

// NewMemoryPresence returns an empty single-node presence store.
func NewMemoryPresence() *MemoryPresence {
	return &MemoryPresence{rooms: map[string]map[string]*roomUser{}, conns: map[string]map[string]struct{}{}}
}

// Join implements Presence.
func (p *MemoryPresence) Join(_ context.Context, room, userID, name, connID string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	users := p.rooms[room]
	if users == nil {
		users = map[string]*roomUser{}
		p.rooms[room] = users
	}
	u := users[userID]
	if u == nil {
		u = &roomUser{conns: map[string]struct{}{}}
		users[userID] = u
	}
	u.name = name
	first := len(u.conns) == 0
	u.conns[connID] = struct{}{}
	return first, nil
}

// Leave implements Presence.
func (p *MemoryPresence) Leave(_ context.Context, room, userID, connID string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	users := p.rooms[room]
	u := users[userID]
	if u == nil {
		return false, nil
	}
	if _, ok := u.conns[connID]; !ok {
		return false, nil
	}
	delete(u.conns, connID)
	if len(u.conns) > 0 {
		return false, nil
	}
	delete(users, userID)
	if len(users) == 0 {
		delete(p.rooms, room)
	}
	return true, nil
}

// Members implements Presence.
func (p *MemoryPresence) Members(_ context.Context, room string) ([]Member, error) {
	p.mu.Lock()
	users := p.rooms[room]
	out := make([]Member, 0, len(users))
	for id, u := range users {
		out = append(out, Member{UserID: id, Name: u.name, Connections: len(u.conns)})
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out, nil
}

// AddConnection implements Presence.
func (p *MemoryPresence) AddConnection(_ context.Context, userID, connID string, limit int) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[userID]
	if _, ok := c[connID]; ok {
		return true, nil
	}
	if limit > 0 && len(c) >= limit {
		return false, nil
	}
	if c == nil {
		c = map[string]struct{}{}
		p.conns[userID] = c
	}
	c[connID] = struct{}{}
	return true, nil
}

// RemoveConnection implements Presence.
func (p *MemoryPresence) RemoveConnection(_ context.Context, userID, connID string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[userID]; c != nil {
		delete(c, connID)
		if len(c) == 0 {
			delete(p.conns, userID)
		}
	}
	return nil
}

// RoomCount is the number of rooms with at least one member.
func (p *MemoryPresence) RoomCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.rooms)
}
