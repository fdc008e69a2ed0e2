package server

import (
	"net"
	"testing"
	"time"
)

// The token bucket paces reads to the configured rate after a burst of one
// stanza budget.
func TestLimitConnRate(t *testing.T) {
	c := &limitConn{budget: 1000, rate: 1000, tokens: 1000, last: time.Unix(0, 0)}
	now := time.Unix(0, 0)
	if w := c.take(1000, now); w != 0 {
		t.Fatalf("burst within budget waited %v", w)
	}
	if w := c.take(500, now); w != 500*time.Millisecond {
		t.Fatalf("over budget: wait %v, want 500ms", w)
	}
	// After 1.5 s the bucket has refilled 1500 tokens (capped at 1000).
	if w := c.take(100, now.Add(1500*time.Millisecond)); w != 0 {
		t.Fatalf("after refill waited %v", w)
	}
	unlimited := &limitConn{budget: 10}
	if w := unlimited.take(1<<20, now); w != 0 {
		t.Fatalf("rate 0 waited %v", w)
	}
}

// Reads beyond the per-element budget fail until reset.
func TestLimitConnBudget(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newLimitConn(a, 10, 0)
	go b.Write(make([]byte, 64))
	buf := make([]byte, 64)
	total := 0
	var err error
	for err == nil {
		var n int
		n, err = c.Read(buf)
		total += n
	}
	if err != errStanzaTooBig || total > 11 {
		t.Fatalf("read %d bytes, err %v", total, err)
	}
	c.reset()
	if n, err := c.Read(buf[:5]); err != nil || n != 5 {
		t.Fatalf("after reset: %d, %v", n, err)
	}
}
