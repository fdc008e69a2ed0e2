// Package turn runs Hearth's embedded STUN/TURN server (RFC 8489, RFC 8656)
// on github.com/pion/turn, with time-limited credentials in the TURN REST API
// scheme (draft-uberti-behave-turn-rest-00) shared with XEP-0215 External
// Service Discovery (appliance/xmpp/mod/extdisco).
//
// Clients reach the server over UDP and TCP on one port (default 3478) and
// over TLS ("turns", default 5349). Relayed transport addresses are UDP
// sockets on RelayIP within a port range. The same shared secret configured
// in coturn (use-auth-secret, static-auth-secret) makes an external coturn
// accept the same credentials.
//
// Peers a client may relay to are restricted: unspecified, multicast,
// link-local and broadcast addresses are always refused, loopback addresses
// unless the relay address itself is loopback (development) or
// Config.AllowLoopbackPeers is set, plus any Config.DeniedPeers.
//
// Each user (the part of the credential username after Separator) may hold
// at most Config.MaxAllocationsPerUser relay allocations; further Allocate
// requests get 486 Allocation Quota Reached (RFC 8656 §7.2; see quota.go).
package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	pion "github.com/pion/turn/v3"
)

// Defaults for Config.
const (
	// DefaultPort is the STUN/TURN port over UDP and TCP (RFC 8489 §18.5).
	DefaultPort = 3478
	// DefaultTLSPort is the STUN/TURN over TLS ("turns") port (RFC 8489 §18.5).
	DefaultTLSPort = 5349
	// DefaultRelayMinPort and DefaultRelayMaxPort bound the relayed transport
	// addresses' UDP ports (inclusive): 256 simultaneous allocations.
	DefaultRelayMinPort = 49152
	DefaultRelayMaxPort = 49407
	// DefaultMaxConns bounds simultaneous TCP and TLS client connections.
	DefaultMaxConns = 1024
	// DefaultMaxConnsPerIP bounds simultaneous TCP and TLS client connections
	// from one source address.
	DefaultMaxConnsPerIP = 32
	// DefaultIdleTimeout ends a TCP or TLS client connection that sent
	// nothing for this long. Clients refresh permissions every 5 minutes
	// (RFC 8656 §9) and allocations at least every 10, so a live client
	// never hits it.
	DefaultIdleTimeout = 15 * time.Minute
	// DefaultFirstRequestTimeout bounds the time from accepting a TCP or TLS
	// connection (including the TLS handshake) to its first bytes.
	DefaultFirstRequestTimeout = 30 * time.Second
	// DefaultMaxAllocationsPerUser bounds one user's live relay allocations.
	// A call uses one allocation per device and transport (two when a
	// client gathers both UDP and TCP/TLS relay candidates), so 10 covers a
	// person with a few devices in a call while keeping one leaked
	// credential from taking the whole relay port range.
	DefaultMaxAllocationsPerUser = 10
)

// Config configures Start. Realm and Secret are required.
type Config struct {
	// Realm is the STUN REALM (RFC 8489 §14.9): the XMPP domain.
	Realm string
	// Secret is the TURN REST API shared secret (see LoadOrCreateSecret).
	Secret string
	// ListenAddrs are the IP addresses to listen on ("127.0.0.1", "::1",
	// "0.0.0.0", "::"); empty means 127.0.0.1.
	ListenAddrs []string
	// Port is the UDP and TCP port; 0 picks a free one (tests).
	Port int
	// TLS, if non-nil, enables STUN/TURN over TLS on TLSPort. The caller owns
	// it: a GetCertificate callback lets the certificate be replaced while
	// running. TLS 1.2 is the minimum whatever it says.
	TLS *tls.Config
	// TLSPort is the TLS port; 0 picks a free one (tests).
	TLSPort int
	// RelayIP is the IPv4 address announced in XOR-RELAYED-ADDRESS (RFC 8656
	// §18.5): the public address. Nil means the first IPv4 listen address,
	// which must then be a specific one.
	RelayIP net.IP
	// RelayBind is the IPv4 address relay sockets bind to. Empty means
	// 0.0.0.0 when listening on 0.0.0.0, else the first IPv4 listen address.
	RelayBind string
	// RelayMinPort and RelayMaxPort bound the relay ports (inclusive); zero
	// means DefaultRelayMinPort and DefaultRelayMaxPort.
	RelayMinPort, RelayMaxPort int
	// AllowLoopbackPeers lets clients relay to loopback peers. It is implied
	// when RelayIP is itself a loopback address (development).
	AllowLoopbackPeers bool
	// DeniedPeers are further peer address ranges clients may not relay to
	// (for example the home network: 192.168.0.0/16).
	DeniedPeers []netip.Prefix
	// MaxConns and MaxConnsPerIP bound simultaneous TCP/TLS connections; zero
	// means DefaultMaxConns and DefaultMaxConnsPerIP.
	MaxConns, MaxConnsPerIP int
	// IdleTimeout ends TCP/TLS connections silent this long; zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxAllocationsPerUser bounds the live relay allocations of one user
	// (the part of the TURN REST API username after Separator, so every
	// credential handed to the same person counts together); an Allocate
	// request beyond it gets 486 Allocation Quota Reached (RFC 8656 §7.2).
	// Zero means DefaultMaxAllocationsPerUser, negative means no quota.
	MaxAllocationsPerUser int
	// Logger receives structured logs (pion's at Debug); nil uses
	// slog.Default(). The secret is never logged.
	Logger *slog.Logger
	// Now is the clock for credential expiry; nil uses time.Now.
	Now func() time.Time
}

// Server is a running STUN/TURN server.
type Server struct {
	realm, secret string
	now           func() time.Time
	log           *slog.Logger
	allowLoopback bool
	denied        []netip.Prefix

	pion    *pion.Server
	udp     []net.PacketConn
	tcp     []*listener
	tls     []*listener
	relays  *relayGenerator
	conns   *connTracker
	port    int
	tlsPort int

	closeOnce sync.Once
	closeErr  error
}

// Start validates cfg, binds every socket and starts serving. It returns an
// error, with nothing left open, for a bad configuration or a failed bind.
func Start(cfg Config) (*Server, error) {
	if cfg.Realm == "" || cfg.Secret == "" {
		return nil, errors.New("turn: Realm and Secret are required")
	}
	if len(cfg.ListenAddrs) == 0 {
		cfg.ListenAddrs = []string{"127.0.0.1"}
	}
	addrs := make([]netip.Addr, 0, len(cfg.ListenAddrs))
	for _, a := range cfg.ListenAddrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return nil, fmt.Errorf("turn: listen address %q is not an IP address", a)
		}
		addrs = append(addrs, ip.Unmap())
	}
	relayIP, relayBind, err := relayAddrs(cfg, addrs)
	if err != nil {
		return nil, err
	}
	minP, maxP := cfg.RelayMinPort, cfg.RelayMaxPort
	if minP == 0 && maxP == 0 {
		minP, maxP = DefaultRelayMinPort, DefaultRelayMaxPort
	}
	if minP < 1 || maxP > 65535 || minP > maxP {
		return nil, fmt.Errorf("turn: bad relay port range %d-%d", minP, maxP)
	}
	s := &Server{
		realm:         cfg.Realm,
		secret:        cfg.Secret,
		now:           cfg.Now,
		log:           cfg.Logger,
		allowLoopback: cfg.AllowLoopbackPeers || relayIP.IsLoopback(),
		denied:        cfg.DeniedPeers,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "turn")
	s.conns = newConnTracker(cfg.MaxConns, cfg.MaxConnsPerIP, cfg.IdleTimeout, s.log)
	s.relays = &relayGenerator{
		inner: &pion.RelayAddressGeneratorPortRange{
			RelayAddress: net.IP(relayIP.AsSlice()),
			MinPort:      uint16(minP),
			MaxPort:      uint16(maxP),
			Address:      relayBind,
		},
		conns:   make(map[*relayConn]struct{}),
		byPort:  make(map[int]*relayConn),
		byTuple: make(map[string]*relayConn),
		used:    make(map[string]int),
		max:     cfg.MaxAllocationsPerUser,
		log:     s.log,
	}
	if s.relays.max == 0 {
		s.relays.max = DefaultMaxAllocationsPerUser
	}
	if err := s.bind(cfg, addrs); err != nil {
		s.closeSockets()
		return nil, err
	}
	quota := s.relays.max > 0
	perm := s.permitted
	pc := pion.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.authenticate,
		LoggerFactory: pionLogs{s.log},
	}
	for _, c := range s.udp {
		if quota {
			c = &quotaPacketConn{PacketConn: c,
				st: &quotaStream{g: s.relays, auth: s.authenticate, proto: "udp", local: c.LocalAddr()}}
		}
		pc.PacketConnConfigs = append(pc.PacketConnConfigs, pion.PacketConnConfig{
			PacketConn: c, RelayAddressGenerator: s.relays, PermissionHandler: perm,
		})
	}
	for _, ls := range [][]*listener{s.tcp, s.tls} {
		for _, l := range ls {
			var pl net.Listener = l.outer
			if quota {
				pl = &quotaListener{Listener: pl, g: s.relays, auth: s.authenticate}
			}
			pc.ListenerConfigs = append(pc.ListenerConfigs, pion.ListenerConfig{
				Listener: pl, RelayAddressGenerator: s.relays, PermissionHandler: perm,
			})
		}
	}
	s.pion, err = pion.NewServer(pc)
	if err != nil {
		s.closeSockets()
		return nil, fmt.Errorf("turn: %w", err)
	}
	for _, c := range s.udp {
		s.log.Info("listening", "kind", "stun-turn-udp", "addr", c.LocalAddr().String())
	}
	for _, l := range s.tcp {
		s.log.Info("listening", "kind", "stun-turn-tcp", "addr", l.Addr().String())
	}
	for _, l := range s.tls {
		s.log.Info("listening", "kind", "stun-turn-tls", "addr", l.Addr().String())
	}
	s.log.Info("relaying", "relay_ip", relayIP.String(), "relay_bind", relayBind, "relay_ports", fmt.Sprintf("%d-%d", minP, maxP),
		"max_allocations_per_user", s.relays.max)
	return s, nil
}

// relayAddrs picks the announced relay IP and the relay sockets' bind
// address (see Config.RelayIP and Config.RelayBind).
func relayAddrs(cfg Config, listen []netip.Addr) (relayIP netip.Addr, bind string, err error) {
	var firstV4 netip.Addr
	anyV4 := false
	for _, a := range listen {
		if !a.Is4() {
			continue
		}
		if a.IsUnspecified() {
			anyV4 = true
		} else if !firstV4.IsValid() {
			firstV4 = a
		}
	}
	if cfg.RelayIP != nil {
		ip, ok := netip.AddrFromSlice(cfg.RelayIP)
		if !ok || !ip.Unmap().Is4() || ip.Unmap().IsUnspecified() {
			return netip.Addr{}, "", fmt.Errorf("turn: relay IP %v is not a specific IPv4 address", cfg.RelayIP)
		}
		relayIP = ip.Unmap()
	} else if anyV4 || !firstV4.IsValid() {
		return netip.Addr{}, "", errors.New("turn: a relay IP (the public IPv4 address) is required when not listening on a specific IPv4 address")
	} else {
		relayIP = firstV4
	}
	bind = cfg.RelayBind
	switch {
	case bind != "":
		if ip, err := netip.ParseAddr(bind); err != nil || !ip.Is4() {
			return netip.Addr{}, "", fmt.Errorf("turn: relay bind address %q is not an IPv4 address", bind)
		}
	case anyV4 || !firstV4.IsValid():
		bind = "0.0.0.0"
	default:
		bind = firstV4.String()
	}
	return relayIP, bind, nil
}

// bind opens the UDP, TCP and TLS sockets. With port 0 the first UDP socket
// picks the port and the others must get the same one; a collision retries
// a few times.
func (s *Server) bind(cfg Config, addrs []netip.Addr) error {
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		if err = s.bindPlain(cfg.Port, addrs); err == nil || cfg.Port != 0 {
			break
		}
		s.closeSockets()
		s.udp, s.tcp = nil, nil
	}
	if err != nil {
		return err
	}
	if cfg.TLS == nil {
		return nil
	}
	tc := cfg.TLS.Clone()
	if tc.MinVersion < tls.VersionTLS12 {
		tc.MinVersion = tls.VersionTLS12
	}
	port := cfg.TLSPort
	for _, a := range addrs {
		raw, err := net.Listen(network("tcp", a), net.JoinHostPort(a.String(), strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("turn: %w", err)
		}
		port = raw.Addr().(*net.TCPAddr).Port
		l := s.conns.listen(raw)
		l.outer = tls.NewListener(l, tc)
		s.tls = append(s.tls, l)
	}
	s.tlsPort = port
	return nil
}

func (s *Server) bindPlain(port int, addrs []netip.Addr) error {
	for _, a := range addrs {
		c, err := net.ListenPacket(network("udp", a), net.JoinHostPort(a.String(), strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("turn: %w", err)
		}
		s.udp = append(s.udp, c)
		port = c.LocalAddr().(*net.UDPAddr).Port
		raw, err := net.Listen(network("tcp", a), net.JoinHostPort(a.String(), strconv.Itoa(port)))
		if err != nil {
			return fmt.Errorf("turn: %w", err)
		}
		l := s.conns.listen(raw)
		l.outer = l
		s.tcp = append(s.tcp, l)
	}
	s.port = port
	return nil
}

// network returns "udp4"/"tcp4" or "udp6"/"tcp6" for a, so that "0.0.0.0"
// and "::" can both be bound (an IPv6 wildcard socket is IPv6-only).
func network(proto string, a netip.Addr) string {
	if a.Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// closeSockets closes what bind opened (before pion owns them).
func (s *Server) closeSockets() {
	for _, c := range s.udp {
		c.Close()
	}
	for _, ls := range [][]*listener{s.tcp, s.tls} {
		for _, l := range ls {
			l.Close()
		}
	}
}

// Port returns the UDP and TCP port served.
func (s *Server) Port() int { return s.port }

// TLSPort returns the TLS port served, or 0 when TLS is off.
func (s *Server) TLSPort() int { return s.tlsPort }

// Realm returns the STUN realm (the XMPP domain).
func (s *Server) Realm() string { return s.realm }

// Credentials returns time-limited credentials for user valid until
// now+ttl (see the package function Credentials).
func (s *Server) Credentials(user string, ttl time.Duration, now time.Time) (username, password string, expires time.Time) {
	return Credentials(s.secret, user, ttl, now)
}

// Allocations returns the number of relayed transport addresses currently
// open.
func (s *Server) Allocations() int { return s.relays.count() }

// AllocationsOf returns the relay allocations user (the part of a TURN
// REST API username after Separator) holds against its quota, counting
// Allocate requests being handled (see Config.MaxAllocationsPerUser).
func (s *Server) AllocationsOf(user string) int { return s.relays.usedBy(user) }

// Close stops the server: it closes the listening sockets, every TCP/TLS
// client connection and every relay socket. Calling it again returns the
// first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err := s.pion.Close()
		s.conns.closeAll()
		s.relays.closeAll()
		if err != nil {
			s.closeErr = fmt.Errorf("turn: %w", err)
		}
		s.log.Info("stopped")
	})
	return s.closeErr
}

// authenticate is pion's AuthHandler: it returns the long-term credential
// key (RFC 8489 §9.2.2: MD5(username:realm:password)) for a valid, unexpired
// TURN REST API username in our realm.
func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	if realm != s.realm {
		s.log.Debug("TURN request for another realm refused", "realm", realm, "from", src.String())
		return nil, false
	}
	if err := CheckUsername(username, s.now()); err != nil {
		s.log.Debug("TURN credentials refused", "username", username, "from", src.String(), "err", err)
		return nil, false
	}
	return pion.GenerateAuthKey(username, realm, Password(s.secret, username)), true
}

// permitted is pion's PermissionHandler (RFC 8656 §9): which peer IP
// addresses a client may install permissions and channels for.
func (s *Server) permitted(client net.Addr, peerIP net.IP) bool {
	ok := s.PeerAllowed(peerIP)
	if !ok {
		s.log.Debug("TURN peer refused", "peer", peerIP.String(), "client", client.String())
	}
	return ok
}

// PeerAllowed reports whether clients may relay to peer: never to
// unspecified, multicast, link-local, broadcast or 0.0.0.0/8 addresses, nor
// to Config.DeniedPeers; to loopback only when allowed (see Config).
func (s *Server) PeerAllowed(peer net.IP) bool {
	a, ok := netip.AddrFromSlice(peer)
	if !ok {
		return false
	}
	a = a.Unmap()
	switch {
	case a.IsUnspecified(), a.IsMulticast(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(),
		a.IsInterfaceLocalMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}),
		a.Is4() && a.As4()[0] == 0:
		return false
	case a.IsLoopback():
		if !s.allowLoopback {
			return false
		}
	}
	for _, p := range s.denied {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// relayGenerator wraps pion's port-range generator to keep every relay
// socket, so Close can release them at once, and keeps the per-user
// allocation quota (see quota.go).
type relayGenerator struct {
	inner *pion.RelayAddressGeneratorPortRange
	max   int // allocations per user; <= 0: no quota
	log   *slog.Logger

	mu      sync.Mutex
	conns   map[*relayConn]struct{}
	byPort  map[int]*relayConn    // by local port (the relayed address's)
	byTuple map[string]*relayConn // owned relays by 5-tuple key
	used    map[string]int        // user → owned relays + reservations
	done    bool
}

func (g *relayGenerator) Validate() error { return g.inner.Validate() }

func (g *relayGenerator) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	c, addr, err := g.inner.AllocatePacketConn(network, port)
	if err != nil {
		return nil, nil, err
	}
	rc := &relayConn{PacketConn: c, g: g}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		c.Close()
		return nil, nil, net.ErrClosed
	}
	g.conns[rc] = struct{}{}
	if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
		rc.port = ua.Port
		g.byPort[ua.Port] = rc
	}
	return rc, addr, nil
}

// AllocateConn is for RFC 6062 TCP relays, which pion's server does not
// offer.
func (g *relayGenerator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("turn: TCP relay allocations are not supported")
}

func (g *relayGenerator) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

func (g *relayGenerator) closeAll() {
	g.mu.Lock()
	g.done = true
	conns := g.conns
	g.conns = map[*relayConn]struct{}{}
	g.byPort, g.byTuple, g.used = map[int]*relayConn{}, map[string]*relayConn{}, map[string]int{}
	g.mu.Unlock()
	for c := range conns {
		c.PacketConn.Close()
	}
}

type relayConn struct {
	net.PacketConn
	g    *relayGenerator
	port int
	// Set by attach under g.mu: the allocation's user and 5-tuple key.
	owned       bool
	user, tuple string
}

// Close closes the relay socket and, the first time, returns its unit of
// the user's quota.
func (c *relayConn) Close() error {
	g := c.g
	g.mu.Lock()
	if _, ok := g.conns[c]; ok {
		delete(g.conns, c)
		if g.byPort[c.port] == c {
			delete(g.byPort, c.port)
		}
		if c.owned {
			if g.byTuple[c.tuple] == c {
				delete(g.byTuple, c.tuple)
			}
			g.releaseLocked(c.user)
		}
	}
	g.mu.Unlock()
	return c.PacketConn.Close()
}

// connTracker bounds and remembers the TCP/TLS client connections, sets
// their read deadlines and closes them all at shutdown (pion's Close only
// closes the listeners).
type connTracker struct {
	max, perIP  int
	idle, first time.Duration
	log         *slog.Logger

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
	byIP  map[netip.Addr]int
	done  bool
}

func newConnTracker(max, perIP int, idle time.Duration, log *slog.Logger) *connTracker {
	if max <= 0 {
		max = DefaultMaxConns
	}
	if perIP <= 0 {
		perIP = DefaultMaxConnsPerIP
	}
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	return &connTracker{max: max, perIP: perIP, idle: idle, first: min(idle, DefaultFirstRequestTimeout), log: log,
		conns: make(map[*trackedConn]struct{}), byIP: make(map[netip.Addr]int)}
}

// listener accepts tracked connections; outer is what pion accepts from
// (the listener itself, or a TLS listener around it).
type listener struct {
	net.Listener
	t     *connTracker
	outer net.Listener
}

func (t *connTracker) listen(l net.Listener) *listener { return &listener{Listener: l, t: t} }

// Accept returns the next admitted connection. Connections over the limits
// are closed at once; temporary accept errors (EMFILE) are retried with a
// backoff, since pion stops serving a listener at the first error.
func (l *listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.t.log.Warn("accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if tc := l.t.add(c); tc != nil {
			return tc, nil
		}
		c.Close()
	}
}

func (t *connTracker) add(c net.Conn) *trackedConn {
	var ip netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done || len(t.conns) >= t.max || t.byIP[ip] >= t.perIP {
		t.log.Debug("TCP connection refused: too many", "from", c.RemoteAddr().String())
		return nil
	}
	tc := &trackedConn{Conn: c, t: t, ip: ip, deadline: t.first}
	t.conns[tc] = struct{}{}
	t.byIP[ip]++
	return tc
}

func (t *connTracker) remove(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[c]; !ok {
		return
	}
	delete(t.conns, c)
	if t.byIP[c.ip]--; t.byIP[c.ip] <= 0 {
		delete(t.byIP, c.ip)
	}
}

func (t *connTracker) closeAll() {
	t.mu.Lock()
	t.done = true
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	t        *connTracker
	ip       netip.Addr
	deadline time.Duration // set before each read; first the first-request bound, then idle
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.deadline)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.deadline = c.t.idle
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.t.remove(c)
	return c.Conn.Close()
}
