package auth

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestThrottleBoundedMemory(t *testing.T) {
	now := time.Unix(1700000000, 0)
	th := NewThrottle(2, time.Minute)
	th.SetClock(func() time.Time { return now })
	th.maxEntries = 100

	blocked := netip.MustParseAddr("192.0.2.1")
	th.RecordFailure(blocked, "victim")
	th.RecordFailure(blocked, "victim")
	for i := range 1000 {
		now = now.Add(time.Millisecond)
		th.RecordFailure(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), fmt.Sprint("u", i))
		if len(th.ips) > th.maxEntries || len(th.accounts) > th.maxEntries {
			t.Fatalf("maps grew to %d/%d entries", len(th.ips), len(th.accounts))
		}
	}
	// Expired entries are dropped before live ones.
	now = now.Add(2 * time.Minute)
	th.RecordFailure(blocked, "victim")
	th.RecordFailure(blocked, "victim")
	now = now.Add(time.Second)
	th.RecordFailure(netip.MustParseAddr("198.51.100.1"), "x")
	if th.Allow(blocked, "") || th.Allow(netip.Addr{}, "victim") {
		t.Error("live block was evicted while expired entries existed")
	}
	if len(th.ips) != 2 || len(th.accounts) != 2 {
		t.Errorf("expired entries not swept: %d/%d", len(th.ips), len(th.accounts))
	}
}
