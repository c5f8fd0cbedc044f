package middleware

import (
	"container/list"
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/sio"
)

// Defaults of CooldownConfig.
const (
	DefaultCooldownMax     = 5 * time.Minute
	DefaultCooldownDecay   = 10 * time.Minute
	DefaultCooldownMaxKeys = 100_000
)

// CooldownConfig configures a Cooldown; zero fields take the defaults.
type CooldownConfig struct {
	// Base is the first cool-down of a user or IP kicked for flooding
	// (RATE_KICK_COOLDOWN); zero or negative turns cool-downs off.
	Base time.Duration
	// Max caps the doubling on repeat kicks; default 5 min.
	Max time.Duration
	// Decay is how long a key's repeat count is remembered once its
	// cool-down has ended: a key that goes Decay without being kicked again
	// starts over at Base. Default 10 min.
	Decay time.Duration
	// MaxKeys bounds the keys (users plus IPs) tracked; default 100,000.
	MaxKeys int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Cooldown remembers the users and IPs kicked for flooding and refuses them
// for a while: Base after the first kick, doubling with each repeat kick up
// to Max. A kick while a key is still cooling down does not count as a
// repeat (a flooder's other tabs kicked at the same moment are one offence).
// The repeat count decays: it is forgotten Decay after the cool-down ends
// without a new kick, and the key with it.
//
// Memory is bounded: at most MaxKeys keys are tracked; forgotten entries are
// purged lazily (a few per call, oldest kick first), and when the table is
// full the new key makes room by dropping forgotten entries, or else the
// least recently kicked key.
//
// The state is per node: in a cluster a kicked client that reconnects
// through another node is not refused there. Safe for concurrent use; a nil
// or disabled (Base <= 0) Cooldown refuses nobody.
type Cooldown struct {
	cfg CooldownConfig

	n     atomic.Int64 // len(keys): lets Remaining skip the lock while nobody is cooling down
	mu    sync.Mutex
	keys  map[string]*list.Element // values are *coolEntry
	order *list.List               // front: least recently kicked
}

type coolEntry struct {
	key     string
	strikes int       // kicks counted (kicks during a cool-down excluded)
	until   time.Time // refused before this
	forget  time.Time // dropped at this time: until + Decay
}

// Bounds of the lazy purge, so that no call scans the whole table.
const (
	purgePerCall  = 8  // forgotten entries dropped from the front per call
	purgeWhenFull = 64 // entries looked at for forgotten ones when the table is full
)

// NewCooldown builds a Cooldown from cfg (defaults filled in).
func NewCooldown(cfg CooldownConfig) *Cooldown {
	if cfg.Max <= 0 {
		cfg.Max = DefaultCooldownMax
	}
	if cfg.Max < cfg.Base {
		cfg.Max = cfg.Base
	}
	if cfg.Decay <= 0 {
		cfg.Decay = DefaultCooldownDecay
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultCooldownMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cooldown{cfg: cfg, keys: map[string]*list.Element{}, order: list.New()}
}

func (cd *Cooldown) enabled() bool { return cd != nil && cd.cfg.Base > 0 }

// cooldownKeys are the table keys of a user and an IP; empty ones are skipped.
func cooldownKeys(userID, ip string) []string {
	keys := make([]string, 0, 2)
	if userID != "" {
		keys = append(keys, "user:"+userID)
	}
	if ip != "" {
		keys = append(keys, "ip:"+ip)
	}
	return keys
}

// Kick records a flood kick of userID from ip (either may be empty) and
// returns the longest cool-down they are now under.
func (cd *Cooldown) Kick(userID, ip string) time.Duration {
	if !cd.enabled() {
		return 0
	}
	now := cd.cfg.Now()
	cd.mu.Lock()
	defer cd.mu.Unlock()
	cd.purgeLocked(now)
	var longest time.Duration
	for _, k := range cooldownKeys(userID, ip) {
		longest = max(longest, cd.kickLocked(k, now))
	}
	return longest
}

func (cd *Cooldown) kickLocked(key string, now time.Time) time.Duration {
	var e *coolEntry
	if el := cd.keys[key]; el != nil {
		e = el.Value.(*coolEntry)
		if !now.Before(e.forget) {
			e.strikes = 0 // decayed: a first offence again
		}
		cd.order.MoveToBack(el)
	} else {
		cd.makeRoomLocked(now)
		e = &coolEntry{key: key}
		cd.keys[key] = cd.order.PushBack(e)
		cd.n.Store(int64(len(cd.keys)))
	}
	if e.strikes > 0 && now.Before(e.until) {
		return e.until.Sub(now) // still cooling down: not a repeat
	}
	e.strikes++
	d := cd.cfg.Base
	for i := 1; i < e.strikes && d < cd.cfg.Max; i++ {
		d = min(d*2, cd.cfg.Max)
		if d <= 0 { // overflow
			d = cd.cfg.Max
		}
	}
	e.until = now.Add(d)
	e.forget = e.until.Add(cd.cfg.Decay)
	return d
}

// Remaining is how long userID or ip (either may be empty) is still
// refused: the longer of the two cool-downs, 0 when neither is cooling down.
func (cd *Cooldown) Remaining(userID, ip string) time.Duration {
	if !cd.enabled() || cd.n.Load() == 0 {
		return 0
	}
	now := cd.cfg.Now()
	cd.mu.Lock()
	defer cd.mu.Unlock()
	cd.purgeLocked(now)
	var left time.Duration
	for _, k := range cooldownKeys(userID, ip) {
		el := cd.keys[k]
		if el == nil {
			continue
		}
		e := el.Value.(*coolEntry)
		if !now.Before(e.forget) {
			cd.removeLocked(el)
			continue
		}
		left = max(left, e.until.Sub(now))
	}
	return left
}

// Len is the number of keys tracked (forgotten ones not yet purged included).
func (cd *Cooldown) Len() int {
	if cd == nil {
		return 0
	}
	return int(cd.n.Load())
}

// purgeLocked drops a few forgotten entries from the front (oldest kicks).
func (cd *Cooldown) purgeLocked(now time.Time) {
	for range purgePerCall {
		el := cd.order.Front()
		if el == nil || now.Before(el.Value.(*coolEntry).forget) {
			return
		}
		cd.removeLocked(el)
	}
}

// makeRoomLocked frees a slot when the table is full: forgotten entries
// among the oldest first, else the least recently kicked key.
func (cd *Cooldown) makeRoomLocked(now time.Time) {
	if len(cd.keys) < cd.cfg.MaxKeys {
		return
	}
	el := cd.order.Front()
	for i := 0; el != nil && i < purgeWhenFull; i++ {
		next := el.Next()
		if !now.Before(el.Value.(*coolEntry).forget) {
			cd.removeLocked(el)
		}
		el = next
	}
	for len(cd.keys) >= cd.cfg.MaxKeys && cd.order.Len() > 0 {
		cd.removeLocked(cd.order.Front())
	}
}

func (cd *Cooldown) removeLocked(el *list.Element) {
	delete(cd.keys, el.Value.(*coolEntry).key)
	cd.order.Remove(el)
	cd.n.Store(int64(len(cd.keys)))
}

// KickCooldown is the connect middleware that refuses a user or IP cd holds
// in a cool-down after a flood kick: connect_error "Too many events: try
// again in <N>s" with code rate_limited. Run it after Auth, so the user is
// known. onRefuse (may be nil) counts the refusals. The cool-down is per
// node (see Cooldown).
func KickCooldown(cd *Cooldown, onRefuse func()) sio.ConnectFunc {
	return func(_ context.Context, h *sio.Handshake) error {
		var userID string
		if h.User != nil {
			userID = h.User.ID
		}
		left := cd.Remaining(userID, h.RemoteAddr)
		if left <= 0 {
			return nil
		}
		if onRefuse != nil {
			onRefuse()
		}
		// connect_error data carries only the code: the wait goes in the message.
		return &sio.Error{Code: sio.CodeRateLimited, Message: cooldownMessage(left)}
	}
}

// cooldownMessage says how long to wait, in whole seconds rounded up.
func cooldownMessage(left time.Duration) string {
	secs := max(int64(math.Ceil(left.Seconds())), 1)
	return fmt.Sprintf("Too many events: try again in %ds", secs)
}
