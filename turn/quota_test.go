package turn_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/turn"
	pion "github.com/pion/turn/v3"
)

// quotaMax is the per-user quota in these tests.
const quotaMax = 2

func startQuota(t *testing.T) *turn.Server {
	return start(t, func(c *turn.Config) { c.MaxAllocationsPerUser = quotaMax })
}

// wantQuotaRefusal checks that err is pion's client error for a 486
// Allocation Quota Reached response (RFC 8656 §7.2).
func wantQuotaRefusal(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("allocation beyond the quota succeeded")
	}
	if !strings.Contains(err.Error(), "error 486") {
		t.Fatalf("allocation beyond the quota: %v, want error 486", err)
	}
}

// waitUsed waits (bounded) until user holds want allocations.
func waitUsed(t *testing.T, s *turn.Server, user string, want int) {
	t.Helper()
	for i := 0; s.AllocationsOf(user) != want; i++ {
		if i == 250 {
			t.Fatalf("AllocationsOf(%q) = %d, want %d", user, s.AllocationsOf(user), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tcpClient(t *testing.T, s *turn.Server, user, pass string) (*pion.Client, net.Conn) {
	t.Helper()
	tc, err := net.Dial("tcp", addr(s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	return client(t, pion.NewSTUNConn(tc), addr(s.Port()), user, pass), tc
}

func TestAllocationQuotaPerUser(t *testing.T) {
	s := startQuota(t)
	now := time.Now()
	// Two credentials of the same user with different expiry share the
	// quota.
	a1, p1, _ := s.Credentials("alice", time.Hour, now)
	a2, p2, _ := s.Credentials("alice", 2*time.Hour, now)
	if a1 == a2 {
		t.Fatal("same username for different expiry")
	}
	r1, err := udpClient(t, s, a1, p1).Allocate()
	if err != nil {
		t.Fatalf("first allocation: %v", err)
	}
	defer r1.Close()
	r2, err := udpClient(t, s, a2, p2).Allocate()
	if err != nil {
		t.Fatalf("second allocation: %v", err)
	}
	defer r2.Close()
	waitUsed(t, s, "alice", quotaMax)

	// The next one is refused, with either credential, over UDP and TCP.
	_, err = udpClient(t, s, a1, p1).Allocate()
	wantQuotaRefusal(t, err)
	_, err = udpClient(t, s, a2, p2).Allocate()
	wantQuotaRefusal(t, err)
	c, _ := tcpClient(t, s, a2, p2)
	_, err = c.Allocate()
	wantQuotaRefusal(t, err)
	if got := s.Allocations(); got != quotaMax {
		t.Fatalf("Allocations() = %d after refusals, want %d", got, quotaMax)
	}

	// Another user is unaffected, and the relay works.
	b, pb, _ := s.Credentials("bob", time.Hour, now)
	rb, err := udpClient(t, s, b, pb).Allocate()
	if err != nil {
		t.Fatalf("bob's allocation: %v", err)
	}
	defer rb.Close()
	relayRoundTrip(t, rb)
	if got := s.AllocationsOf("bob"); got != 1 {
		t.Fatalf("AllocationsOf(bob) = %d, want 1", got)
	}

	// Releasing one (Refresh with LIFETIME 0) lets a new one in.
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	waitUsed(t, s, "alice", quotaMax-1)
	r3, err := udpClient(t, s, a1, p1).Allocate()
	if err != nil {
		t.Fatalf("allocation after a release: %v", err)
	}
	defer r3.Close()
	relayRoundTrip(t, r3)
	_, err = udpClient(t, s, a2, p2).Allocate()
	wantQuotaRefusal(t, err)
}

func TestAllocationQuotaOverTCP(t *testing.T) {
	s := startQuota(t)
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	var conns []net.Conn
	for i := 0; i < quotaMax; i++ {
		c, tc := tcpClient(t, s, user, pass)
		r, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocation %d over TCP: %v", i, err)
		}
		defer r.Close()
		conns = append(conns, tc)
	}
	waitUsed(t, s, "alice", quotaMax)
	c, _ := tcpClient(t, s, user, pass)
	_, err := c.Allocate()
	wantQuotaRefusal(t, err)

	// Losing the TCP connection ends its allocation (RFC 8656 §3.1) and
	// frees its quota.
	conns[0].Close()
	waitUsed(t, s, "alice", quotaMax-1)
	c, _ = tcpClient(t, s, user, pass)
	r, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocation over TCP after a release: %v", err)
	}
	defer r.Close()
	relayRoundTrip(t, r)
}

func TestAllocationQuotaDisabled(t *testing.T) {
	s := start(t, func(c *turn.Config) { c.MaxAllocationsPerUser = -1 })
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	for i := 0; i < turn.DefaultMaxAllocationsPerUser+1; i++ {
		r, err := udpClient(t, s, user, pass).Allocate()
		if err != nil {
			t.Fatalf("allocation %d without a quota: %v", i, err)
		}
		defer r.Close()
	}
}

func TestAllocationQuotaDefault(t *testing.T) {
	s := start(t)
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	for i := 0; i < turn.DefaultMaxAllocationsPerUser; i++ {
		r, err := udpClient(t, s, user, pass).Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		defer r.Close()
	}
	_, err := udpClient(t, s, user, pass).Allocate()
	wantQuotaRefusal(t, err)
}
