package auth

import (
	"net/netip"
	"sync"
	"time"
)

// maxThrottleEntries bounds the number of source addresses and, separately,
// the number of accounts a Throttle remembers.
const maxThrottleEntries = 10000

// Throttle limits failed logins per source address and per account with a
// sliding window: once maxFailures failures were recorded for a key within
// the last window, Allow reports false for that key until the oldest of
// those failures is older than window. Blocked attempts are not recorded, so
// a block always ends window after the failure that triggered it.
//
// Source addresses are grouped: IPv4 (and IPv4-mapped IPv6) addresses count
// individually, IPv6 addresses per /64 prefix. Accounts are keyed by the
// normalised localpart. Memory is bounded: each map holds at most 10,000
// keys; when full, expired keys are dropped first, then the key with the
// oldest last failure.
//
// A Throttle is safe for concurrent use and is meant to be shared by all
// connections. A nil *Throttle allows everything and records nothing.
type Throttle struct {
	mu          sync.Mutex
	maxFailures int
	window      time.Duration
	now         func() time.Time
	maxEntries  int
	ips         map[netip.Addr]*failureLog
	accounts    map[string]*failureLog
}

// failureLog holds the times of the most recent failures of one key, oldest
// first, at most maxFailures of them.
type failureLog struct {
	times []time.Time
}

// NewThrottle returns a Throttle that blocks a source address or account
// after maxFailures failed logins within window. It panics if maxFailures is
// less than 1 or window is not positive.
func NewThrottle(maxFailures int, window time.Duration) *Throttle {
	if maxFailures < 1 || window <= 0 {
		panic("auth: NewThrottle needs maxFailures >= 1 and window > 0")
	}
	return &Throttle{
		maxFailures: maxFailures,
		window:      window,
		now:         time.Now,
		maxEntries:  maxThrottleEntries,
		ips:         make(map[netip.Addr]*failureLog),
		accounts:    make(map[string]*failureLog),
	}
}

// SetClock replaces the time source (time.Now by default); it is meant for
// tests. now must be safe for concurrent use.
func (t *Throttle) SetClock(now func() time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.now = now
}

// throttleIPKey maps an address to the key it is counted under.
func throttleIPKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// Allow reports whether a login attempt from ip for username may proceed.
// A zero ip or an empty username is not checked, so Allow(ip, "") checks
// only the address (as used before the username is known).
func (t *Throttle) Allow(ip netip.Addr, username string) bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if ip.IsValid() && t.blocked(t.ips[throttleIPKey(ip)], now) {
		return false
	}
	if username != "" && t.blocked(t.accounts[username], now) {
		return false
	}
	return true
}

// RecordFailure records one failed login from ip for username. A zero ip or
// an empty username is not recorded.
func (t *Throttle) RecordFailure(ip netip.Addr, username string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if ip.IsValid() {
		record(t, t.ips, throttleIPKey(ip), now)
	}
	if username != "" {
		record(t, t.accounts, username, now)
	}
}

func (t *Throttle) blocked(l *failureLog, now time.Time) bool {
	return l != nil && len(l.times) >= t.maxFailures && now.Sub(l.times[0]) < t.window
}

func (t *Throttle) expired(l *failureLog, now time.Time) bool {
	return len(l.times) == 0 || now.Sub(l.times[len(l.times)-1]) >= t.window
}

func record[K comparable](t *Throttle, m map[K]*failureLog, key K, now time.Time) {
	l, ok := m[key]
	if !ok {
		if len(m) >= t.maxEntries {
			evict(t, m, now)
		}
		l = &failureLog{times: make([]time.Time, 0, t.maxFailures)}
		m[key] = l
	}
	// Drop failures that left the window, then append, keeping at most
	// maxFailures entries.
	i := 0
	for i < len(l.times) && now.Sub(l.times[i]) >= t.window {
		i++
	}
	l.times = append(l.times[:0], l.times[i:]...)
	if len(l.times) >= t.maxFailures {
		copy(l.times, l.times[1:])
		l.times = l.times[:len(l.times)-1]
	}
	l.times = append(l.times, now)
}

// evict makes room for one more key in m.
func evict[K comparable](t *Throttle, m map[K]*failureLog, now time.Time) {
	for k, l := range m {
		if t.expired(l, now) {
			delete(m, k)
		}
	}
	if len(m) < t.maxEntries {
		return
	}
	var (
		oldestKey  K
		oldestTime time.Time
		found      bool
	)
	for k, l := range m {
		last := l.times[len(l.times)-1]
		if !found || last.Before(oldestTime) {
			oldestKey, oldestTime, found = k, last, true
		}
	}
	if found {
		delete(m, oldestKey)
	}
}
