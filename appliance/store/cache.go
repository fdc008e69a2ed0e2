package store

import (
	"strings"
	"sync"
)

// accountCache remembers localparts known to have an account, so that
// [Store.AccountExists], asked for every routed stanza (RFC 6121 §8.5.2:
// service-unavailable or delivery/offline storage), costs a map lookup
// instead of a SQLite query.
//
// Only positive answers are kept: a name enters when a lookup finds it in
// SQLite or when this Store commits its creation, and leaves when this
// Store deletes it. A negative answer always goes to SQLite, because
// another process ("hearth user add" on the same file) may create an
// account at any time. Deletion by another process cannot happen while a
// server runs: "hearth user del" goes through the running server's control
// socket (and so through the server's Store), and the offline path is
// refused while serve.lock is held. A data directory rename
// ([Store.RenameDomain]) keeps localparts, so it leaves the cache valid.
//
// Memory: one entry per existing account that was looked up or created
// (its localpart, at most 1023 bytes by RFC 7622, typically ~10, plus about
// 100 bytes of map overhead); lookups of names without an account never
// add one, so the cache never holds more entries than the accounts table
// has rows. For a family server (tens to a few hundred accounts) that is a
// few KiB, so it is left unbounded.
//
// Concurrency: reads are lock-free (sync.Map). Fills and deletions take mu
// and a generation counter closes the race between a lookup that read
// "exists" from SQLite and a deletion that commits before the lookup
// stores its answer: a fill only lands if no deletion happened since the
// filler started.
type accountCache struct {
	names sync.Map // localpart -> struct{}

	mu  sync.Mutex
	gen uint64 // bumped by every forget; guarded by mu
}

// has reports whether username is known to have an account.
func (c *accountCache) has(username string) bool {
	_, ok := c.names.Load(username)
	return ok
}

// generation returns the current generation, to pass to add after the
// SQLite read or write that found or created the account.
func (c *accountCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// add records that username has an account, unless an account was
// forgotten since gen was read (the answer may then be stale).
func (c *accountCache) add(username string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		// Clone: username is often a substring of a whole JID or stanza.
		c.names.Store(strings.Clone(username), struct{}{})
	}
}

// forget drops username (after its deletion is committed) and invalidates
// fills in flight.
func (c *accountCache) forget(username string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.names.Delete(username)
}

// accounts returns s's account-existence cache.
func (s *Store) accounts() *accountCache { return &s.acct }
