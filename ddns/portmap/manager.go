package portmap

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// DefaultLease is how long each mapping is asked for; the Manager renews at
// half of it. RFC 6886 §3.3 recommends 7200 s for NAT-PMP.
const DefaultLease = 2 * time.Hour

// MappingStatus is the state of one wanted mapping, for the wizard and
// admin pages.
type MappingStatus struct {
	Mapping Mapping
	// External is the port granted on the router, 0 while not mapped.
	External uint16
	// Renewed is when the router last accepted the mapping.
	Renewed time.Time
	// Err is the router's last refusal or the discovery error, "" if mapped.
	Err string
}

// Status is a snapshot of the Manager.
type Status struct {
	// Protocol is "UPnP IGD" or "NAT-PMP", or "" while no router was found.
	Protocol string
	// LocalAddr is Hearth's LAN address the mappings point at.
	LocalAddr netip.Addr
	// ExternalIP is the router's WAN address as it reports it.
	ExternalIP netip.Addr
	// Mappings has one entry per wanted mapping, in the order given.
	Mappings []MappingStatus
	// Checked is when the Manager last talked to (or looked for) a router.
	Checked time.Time
	// Err is the discovery error while there is no router.
	Err string
}

// Mapped reports whether every wanted mapping is in place.
func (s Status) Mapped() bool {
	for _, m := range s.Mappings {
		if m.External == 0 {
			return false
		}
	}
	return len(s.Mappings) > 0
}

// Manager keeps mappings alive on the home router: it discovers a router,
// maps every wanted port, renews at half the lease, retries discovery with
// backoff (a router switched on later is picked up) and removes its
// mappings when Run's context ends.
type Manager struct {
	discover func(ctx context.Context) (Router, error)
	wanted   []Mapping
	lease    time.Duration
	log      *slog.Logger
	now      func() time.Time

	mu     sync.Mutex
	router Router
	status Status
}

// NewManager returns a Manager for wanted, discovering the router with
// discover (for example func(ctx) { return Discover(ctx, "auto") }); lease
// 0 means DefaultLease; log nil means slog.Default().
func NewManager(discover func(context.Context) (Router, error), wanted []Mapping, lease time.Duration, log *slog.Logger) *Manager {
	if lease <= 0 {
		lease = DefaultLease
	}
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{discover: discover, wanted: wanted, lease: lease, log: log, now: time.Now}
	m.status.Mappings = make([]MappingStatus, len(wanted))
	for i, w := range wanted {
		m.status.Mappings[i] = MappingStatus{Mapping: w}
	}
	return m
}

// Status returns a copy of the current state.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Mappings = append([]MappingStatus(nil), m.status.Mappings...)
	return s
}

// Refresh discovers the router if needed and (re)maps every wanted port
// once; it returns the resulting status. Run calls it on its schedule; the
// wizard may call it for a "check again" button.
func (m *Manager) Refresh(ctx context.Context) Status {
	m.mu.Lock()
	r := m.router
	m.mu.Unlock()
	if r == nil {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		r, err = m.discover(dctx)
		cancel()
		if err != nil {
			m.mu.Lock()
			m.status.Checked, m.status.Err = m.now(), err.Error()
			m.mu.Unlock()
			return m.Status()
		}
		m.log.Info("router found", "protocol", r.Protocol(), "local", r.LocalAddr())
	}
	ext, extErr := r.ExternalIP(ctx)
	results := make([]MappingStatus, len(m.wanted))
	failures := 0
	for i, w := range m.wanted {
		results[i] = MappingStatus{Mapping: w}
		got, err := r.Add(ctx, w, m.lease)
		if err != nil {
			failures++
			results[i].Err = err.Error()
			continue
		}
		results[i].External, results[i].Renewed = got, m.now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if extErr != nil && failures == len(m.wanted) {
		// The router stopped answering: look for one again next time.
		m.router = nil
		m.status.Err = extErr.Error()
	} else {
		m.router = r
		m.status.Err = ""
	}
	m.status.Protocol, m.status.LocalAddr, m.status.ExternalIP = r.Protocol(), r.LocalAddr(), ext
	m.status.Mappings, m.status.Checked = results, m.now()
	if failures > 0 {
		m.log.Warn("router refused port mappings", "protocol", r.Protocol(), "failed", failures, "of", len(m.wanted))
	} else {
		m.log.Info("ports mapped on the router", "protocol", r.Protocol(), "external_ip", ext, "count", len(m.wanted))
	}
	return m.statusLocked()
}

func (m *Manager) statusLocked() Status {
	s := m.status
	s.Mappings = append([]MappingStatus(nil), m.status.Mappings...)
	return s
}

// Run refreshes until ctx ends: at half the lease while mapped, with
// exponential backoff from 30 s to 30 min (with jitter) while discovery or
// mappings fail. Then it deletes the mappings it made. The returned channel
// closes when all is done.
func (m *Manager) Run(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		backoff := 30 * time.Second
		for {
			s := m.Refresh(ctx)
			wait := m.lease / 2
			if !s.Mapped() {
				wait = backoff + time.Duration(rand.Int64N(int64(backoff/4)+1))
				backoff = min(backoff*2, 30*time.Minute)
			} else {
				backoff = 30 * time.Second
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				m.Remove()
				return
			case <-t.C:
			}
		}
	}()
	return done
}

// Remove deletes the mappings in place (Run does it when its context ends),
// with a deadline of its own of 5 s. Failures are logged.
func (m *Manager) Remove() {
	m.mu.Lock()
	r := m.router
	s := m.statusLocked()
	m.mu.Unlock()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, ms := range s.Mappings {
		if ms.External == 0 {
			continue
		}
		if err := r.Delete(ctx, ms.Mapping, ms.External); err != nil {
			m.log.Warn("removing a port mapping failed", "mapping", ms.Mapping.String(), "err", err)
		}
	}
	m.log.Info("port mappings removed", "protocol", r.Protocol())
}
