package adapter

import (
	"context"
	"sync"
	"time"
)

// Accepted is what the first delivery of a message was acknowledged with.
type Accepted struct {
	ID string `json:"id"`
	TS int64  `json:"ts"`
}

// Dedupe remembers accepted messages by key for a window, so that a retried
// message is broadcast once.
type Dedupe interface {
	// Claim stores v under key for ttl unless a live entry exists. It returns
	// the entry that holds (v or the earlier one) and whether it was earlier.
	Claim(ctx context.Context, key string, v Accepted, ttl time.Duration) (Accepted, bool, error)
	// Release forgets the claim of key if it still holds v: the message was
	// not delivered after all (the cluster was unreachable), so a retry must
	// be accepted afresh, not answered as a duplicate. A key held by another
	// value (a claim made since) is left alone.
	Release(ctx context.Context, key string, v Accepted) error
}

// MemoryDedupe is the single-node Dedupe. Entries expire in insertion order
// (the window is the same for every entry), so eviction is O(1) amortised
// and needs no background goroutine. SetMaxEntries bounds it: beyond, the
// oldest entries are forgotten first.
type MemoryDedupe struct {
	mu      sync.Mutex
	entries map[string]dedupeEntry
	order   []dedupeKey // insertion order; order[head:] is live
	head    int
	now     func() time.Time
	max     int    // entries kept at most; <= 0: no bound
	onEvict func() // an entry forgotten before it expired (max)
}

type dedupeEntry struct {
	v       Accepted
	expires time.Time
}

type dedupeKey struct {
	key     string
	expires time.Time
}

// NewMemoryDedupe returns an empty single-node de-duplication store.
func NewMemoryDedupe() *MemoryDedupe {
	return &MemoryDedupe{entries: map[string]dedupeEntry{}, now: time.Now, max: DefaultDedupeMaxEntries}
}

// DefaultDedupeMaxEntries bounds a MemoryDedupe until SetMaxEntries says otherwise
// (DEDUPE_MAX_ENTRIES' default).
const DefaultDedupeMaxEntries = 100_000

// SetMaxEntries bounds the entries kept to max (<= 0: no bound; default
// DefaultDedupeMaxEntries): beyond, the oldest are forgotten before they expire, each
// reported to onEvict (may be nil), called with the store's lock held.
// Call it before the store is used.
func (d *MemoryDedupe) SetMaxEntries(max int, onEvict func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.max, d.onEvict = max, onEvict
}

// Claim implements Dedupe.
func (d *MemoryDedupe) Claim(_ context.Context, key string, v Accepted, ttl time.Duration) (Accepted, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	d.evict(now)
	if e, ok := d.entries[key]; ok && now.Before(e.expires) {
		return e.v, true, nil
	}
	exp := now.Add(ttl)
	d.entries[key] = dedupeEntry{v: v, expires: exp}
	d.order = append(d.order, dedupeKey{key: key, expires: exp})
	if d.max > 0 && len(d.entries) > d.max {
		d.evictOldest()
	}
	return v, false, nil
}

// Release implements Dedupe.
func (d *MemoryDedupe) Release(_ context.Context, key string, v Accepted) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.entries[key]; ok && e.v == v {
		// Its place in d.order no longer matches an entry: evict skips it.
		delete(d.entries, key)
	}
	return nil
}

// get is the live entry of key, if any.
func (d *MemoryDedupe) get(key string) (Accepted, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries[key]
	if !ok || !d.now().Before(e.expires) {
		return Accepted{}, false
	}
	return e.v, true
}

// put stores v under key for ttl, replacing any entry.
func (d *MemoryDedupe) put(key string, v Accepted, ttl time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	d.evict(now)
	exp := now.Add(ttl)
	d.entries[key] = dedupeEntry{v: v, expires: exp}
	d.order = append(d.order, dedupeKey{key: key, expires: exp})
	if d.max > 0 && len(d.entries) > d.max {
		d.evictOldest()
	}
}

// evictOldest forgets the oldest entries until max are left.
func (d *MemoryDedupe) evictOldest() {
	for ; d.head < len(d.order) && len(d.entries) > d.max; d.head++ {
		k := d.order[d.head]
		if e, ok := d.entries[k.key]; ok && e.expires.Equal(k.expires) {
			delete(d.entries, k.key)
			if d.onEvict != nil {
				d.onEvict()
			}
		}
		d.order[d.head] = dedupeKey{}
	}
}

func (d *MemoryDedupe) evict(now time.Time) {
	for ; d.head < len(d.order) && !now.Before(d.order[d.head].expires); d.head++ {
		k := d.order[d.head]
		if e, ok := d.entries[k.key]; ok && e.expires.Equal(k.expires) {
			delete(d.entries, k.key)
		}
		d.order[d.head] = dedupeKey{}
	}
	// Compact once the dead prefix dominates: amortised O(1) per entry.
	if d.head > 64 && d.head*2 > len(d.order) {
		d.order = append(make([]dedupeKey, 0, len(d.order)-d.head), d.order[d.head:]...)
		d.head = 0
	}
}

// Len is the number of live entries (for tests and metrics).
func (d *MemoryDedupe) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.evict(d.now())
	return len(d.entries)
}
