package server

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bounds what one peer may make the server do. Zero fields take the
// defaults of DefaultLimits. Each breach ends the offending stream with a
// stream error (RFC 6120 §4.9.3) and a log line; other sessions are unaffected.
type Limits struct {
	// MaxStanzaBytes is the largest top-level element (stanza or negotiation
	// element) a peer may send, in bytes on the wire including TLS framing
	// overhead. Breach: stream error policy-violation. Default 256 KiB.
	MaxStanzaBytes int
	// ReadBytesPerSecond throttles reading from one connection; bursts up to
	// MaxStanzaBytes are allowed. A fast sender is slowed down, not
	// disconnected. Default 128 KiB/s.
	ReadBytesPerSecond int
	// AuthTimeout is how long a connection may take from accept to a bound
	// resource. Breach: stream error connection-timeout. Default 60 s.
	AuthTimeout time.Duration
	// MaxConnsPerIP caps simultaneous connections from one source address.
	// Breach: stream error policy-violation. Default 32.
	MaxConnsPerIP int
	// SendQueueBytes bounds the serialized stanzas waiting to be written to one
	// session. Breach (a peer that does not read): stream error
	// resource-constraint; queued messages with a body go to offline storage.
	// Default 2 MiB.
	SendQueueBytes int
	// WriteTimeout is how long one write to a peer may block. Default 30 s.
	WriteTimeout time.Duration
	// MaxOfflinePerUser caps stored offline messages per account (XEP-0160).
	// Breach: the sender gets service-unavailable. Default 1000.
	MaxOfflinePerUser int
	// MaxRosterItems caps roster size per account (RFC 6121 §2.3.3:
	// not-allowed beyond it). Default 1000.
	MaxRosterItems int
	// ResumeTimeout is how long a stream-managed session whose connection was
	// lost stays resumable (XEP-0198 §5 "max"). Default 5 minutes.
	ResumeTimeout time.Duration
	// MaxUnacked bounds stanzas sent but not acknowledged under stream
	// management, including those kept while hibernated. Breach: stream error
	// resource-constraint; the stanzas are rerouted. Default 1000.
	MaxUnacked int
	// LoginFailures and LoginWindow throttle failed logins per IP and per
	// account: after LoginFailures failures within LoginWindow further attempts
	// fail with temporary-auth-failure. Defaults 5 and 5 minutes.
	LoginFailures int
	LoginWindow   time.Duration
}

// DefaultLimits are the limits used for zero fields of Limits.
var DefaultLimits = Limits{
	MaxStanzaBytes:     256 << 10,
	ReadBytesPerSecond: 128 << 10,
	AuthTimeout:        60 * time.Second,
	MaxConnsPerIP:      32,
	SendQueueBytes:     2 << 20,
	WriteTimeout:       30 * time.Second,
	MaxOfflinePerUser:  1000,
	MaxRosterItems:     1000,
	LoginFailures:      5,
	LoginWindow:        5 * time.Minute,
	ResumeTimeout:      5 * time.Minute,
	MaxUnacked:         1000,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxStanzaBytes > 0 {
		d.MaxStanzaBytes = l.MaxStanzaBytes
	}
	if l.ReadBytesPerSecond > 0 {
		d.ReadBytesPerSecond = l.ReadBytesPerSecond
	}
	if l.AuthTimeout > 0 {
		d.AuthTimeout = l.AuthTimeout
	}
	if l.MaxConnsPerIP > 0 {
		d.MaxConnsPerIP = l.MaxConnsPerIP
	}
	if l.SendQueueBytes > 0 {
		d.SendQueueBytes = l.SendQueueBytes
	}
	if l.WriteTimeout > 0 {
		d.WriteTimeout = l.WriteTimeout
	}
	if l.MaxOfflinePerUser > 0 {
		d.MaxOfflinePerUser = l.MaxOfflinePerUser
	}
	if l.MaxRosterItems > 0 {
		d.MaxRosterItems = l.MaxRosterItems
	}
	if l.ResumeTimeout > 0 {
		d.ResumeTimeout = l.ResumeTimeout
	}
	if l.MaxUnacked > 0 {
		d.MaxUnacked = l.MaxUnacked
	}
	if l.LoginFailures > 0 {
		d.LoginFailures = l.LoginFailures
	}
	if l.LoginWindow > 0 {
		d.LoginWindow = l.LoginWindow
	}
	return d
}

// errStanzaTooBig is returned by limitConn.Read once a peer has sent more than
// the per-element budget since the last reset.
var errStanzaTooBig = errors.New("stanza exceeds the size limit")

// limitConn wraps the raw TCP connection below TLS. It counts the bytes read
// since the reader last called reset (once per top-level element) and fails
// reads beyond the budget, so a peer cannot make the decoder buffer an
// unbounded element. It also paces reads to a byte rate with a token bucket.
type limitConn struct {
	net.Conn
	mu     sync.Mutex
	budget int // bytes allowed per element
	used   int
	rate   float64 // bytes per second
	tokens float64
	last   time.Time
	// served is the certificate presented in this connection's TLS
	// handshake when it was chosen by Config.GetCertificate.
	served atomic.Pointer[tls.Certificate]
}

func newLimitConn(c net.Conn, budget, rate int) *limitConn {
	return &limitConn{Conn: c, budget: budget, rate: float64(rate), tokens: float64(budget), last: time.Now()}
}

// reset starts a new per-element budget.
func (c *limitConn) reset() {
	c.mu.Lock()
	c.used = 0
	c.mu.Unlock()
}

func (c *limitConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.used > c.budget {
		c.mu.Unlock()
		return 0, errStanzaTooBig
	}
	// Never read more than the remaining budget (plus one byte to detect the
	// overflow) so the check above trips promptly.
	if room := c.budget - c.used + 1; len(p) > room {
		p = p[:room]
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.used += n
		wait := c.take(n, time.Now())
		c.mu.Unlock()
		if wait > 0 {
			time.Sleep(wait)
		}
	}
	return n, err
}

// take removes n tokens from the bucket and returns how long to pause so the
// average rate stays at or below c.rate. Called with c.mu held.
func (c *limitConn) take(n int, now time.Time) time.Duration {
	if c.rate <= 0 {
		return 0
	}
	c.tokens += now.Sub(c.last).Seconds() * c.rate
	c.last = now
	if max := float64(c.budget); c.tokens > max {
		c.tokens = max
	}
	c.tokens -= float64(n)
	if c.tokens >= 0 {
		return 0
	}
	return time.Duration(-c.tokens / c.rate * float64(time.Second))
}

// ipCounter counts open connections per source address.
type ipCounter struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

// acquire increments addr's count and reports whether it is within max.
// A false result has not incremented.
func (c *ipCounter) acquire(addr netip.Addr, max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[netip.Addr]int)
	}
	if c.n[addr] >= max {
		return false
	}
	c.n[addr]++
	return true
}

func (c *ipCounter) release(addr netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[addr] <= 1 {
		delete(c.n, addr)
	} else {
		c.n[addr]--
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}
