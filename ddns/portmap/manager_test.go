package portmap

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeRouter records mappings like a router's table.
type fakeRouter struct {
	mu      sync.Mutex
	table   map[string]time.Duration // "tcp/5222" -> lease
	refuse  map[uint16]bool
	deleted []string
	down    bool
}

func (f *fakeRouter) Protocol() string      { return "fake" }
func (f *fakeRouter) LocalAddr() netip.Addr { return netip.MustParseAddr("10.0.0.2") }
func (f *fakeRouter) ExternalIP(context.Context) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return netip.Addr{}, errors.New("no answer")
	}
	return netip.MustParseAddr("20.0.0.1"), nil
}
func (f *fakeRouter) Add(_ context.Context, m Mapping, lease time.Duration) (uint16, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down || f.refuse[m.InternalPort] {
		return 0, errors.New("ConflictInMappingEntry")
	}
	f.table[m.String()] = lease
	return m.external(), nil
}
func (f *fakeRouter) Delete(_ context.Context, m Mapping, ext uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.table, m.String())
	f.deleted = append(f.deleted, m.String())
	return nil
}

var wanted = []Mapping{{Protocol: "tcp", InternalPort: 5222}, {Protocol: "udp", InternalPort: 3478, ExternalPort: 3479}}

func TestManager(t *testing.T) {
	r := &fakeRouter{table: map[string]time.Duration{}, refuse: map[uint16]bool{3478: true}}
	calls := 0
	var found Router // nil until the second discovery
	m := NewManager(func(context.Context) (Router, error) {
		calls++
		if found == nil {
			found = r
			return nil, ErrNoRouter
		}
		return found, nil
	}, wanted, time.Hour, nil)
	ctx := context.Background()

	s := m.Refresh(ctx)
	if s.Protocol != "" || s.Err == "" || s.Mapped() {
		t.Fatalf("no router: %+v", s)
	}
	s = m.Refresh(ctx)
	if s.Protocol != "fake" || s.ExternalIP.String() != "20.0.0.1" || s.Mapped() {
		t.Fatalf("one refused: %+v", s)
	}
	if s.Mappings[0].External != 5222 || s.Mappings[1].External != 0 || s.Mappings[1].Err == "" {
		t.Fatalf("mapping results: %+v", s.Mappings)
	}
	r.mu.Lock()
	r.refuse = nil
	r.mu.Unlock()
	s = m.Refresh(ctx)
	if !s.Mapped() || s.Mappings[1].External != 3479 || r.table["udp 3479->3478"] != time.Hour {
		t.Fatalf("all mapped: %+v %v", s, r.table)
	}
	if calls != 2 {
		t.Errorf("discovery ran %d times, want 2 (the router is kept)", calls)
	}

	// A router that stops answering is looked for again.
	r.mu.Lock()
	r.down = true
	r.mu.Unlock()
	if s = m.Refresh(ctx); s.Mapped() || s.Err == "" {
		t.Fatalf("router down: %+v", s)
	}
	r.mu.Lock()
	r.down = false
	r.mu.Unlock()
	m.Refresh(ctx)
	if calls != 3 {
		t.Errorf("discovery ran %d times, want 3", calls)
	}

	// Run maps at once and removes everything when its context ends.
	rctx, cancel := context.WithCancel(ctx)
	done := m.Run(rctx)
	deadline := time.Now().Add(5 * time.Second)
	for !m.Status().Mapped() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.table) != 0 || len(r.deleted) != 2 {
		t.Errorf("after Run: table %v, deleted %v", r.table, r.deleted)
	}
}
