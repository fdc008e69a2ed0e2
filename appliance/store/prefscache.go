package store

import (
	"slices"
	"sync"
)

// prefsCache remembers the XEP-0441 archiving preferences of accounts, so
// that [Store.ArchivePrefs], read twice for every archived 1:1 message
// (the sender's and the recipient's archive), costs a map lookup instead
// of a read transaction with two SQLite queries.
//
// This Store is the only writer of preferences while a server runs: they
// change through [Store.SetArchivePrefs] and disappear with the account
// ([Store.DeleteAccount], ON DELETE CASCADE); both drop the entry after
// their commit. Other processes do not write them (account deletion goes
// through the running server, see accountCache; a domain rename needs a
// data directory without archive preferences). Only existing accounts are
// cached (ArchivePrefs fails for others), so the cache never holds more
// entries than the accounts table has rows: a few hundred bytes per account
// without always/never lists.
//
// A generation counter, as in accountCache, keeps a read that started
// before a change from storing what it read after the change committed.
type prefsCache struct {
	mu  sync.Mutex
	gen uint64                  // bumped by every forget
	m   map[string]ArchivePrefs // localpart -> preferences; guarded by mu
}

// get returns a copy of username's cached preferences (the caller may
// change it), and whether there were any.
func (c *prefsCache) get(username string) (ArchivePrefs, bool) {
	c.mu.Lock()
	p, ok := c.m[username]
	c.mu.Unlock()
	if !ok {
		return ArchivePrefs{}, false
	}
	p.Always, p.Never = slices.Clone(p.Always), slices.Clone(p.Never)
	return p, true
}

// generation returns the current generation, to pass to put after the
// read.
func (c *prefsCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put records username's preferences p as read from SQLite, unless they
// were changed or the account deleted since gen was read. It keeps its
// own copy of p's lists.
func (c *prefsCache) put(username string, p ArchivePrefs, gen uint64) {
	p.Always, p.Never = slices.Clone(p.Always), slices.Clone(p.Never)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil {
		c.m = make(map[string]ArchivePrefs)
	}
	c.m[username] = p
}

// forget drops username's entry (after a change to its preferences or the
// deletion of the account committed, or failed) and invalidates reads in
// flight.
func (c *prefsCache) forget(username string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, username)
}
