package turn_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"github.com/hearthxmpp/hearth/turn"
	"github.com/pion/logging"
	pion "github.com/pion/turn/v3"
)

const (
	realm  = "example.org"
	secret = "0123456789abcdef-test-secret"
)

// Relay ports for tests, away from the production default range so a
// running `hearth serve` does not collide.
const relayMin, relayMax = 40000, 40999

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs a TURN server on 127.0.0.1 (ports picked freely), closed when
// the test ends.
func start(t *testing.T, mod ...func(*turn.Config)) *turn.Server {
	t.Helper()
	cfg := turn.Config{
		Realm: realm, Secret: secret, ListenAddrs: []string{"127.0.0.1"},
		RelayMinPort: relayMin, RelayMaxPort: relayMax, Logger: quiet(),
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := turn.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// pionLog silences the pion client.
type pionLog struct{}

func (pionLog) NewLogger(string) logging.LeveledLogger {
	f := logging.NewDefaultLoggerFactory()
	f.Writer = io.Discard
	return f.NewLogger("turnc")
}

// client returns a pion TURN client speaking to the server over conn
// (a UDP socket, or a STUNConn around a TCP/TLS connection).
func client(t *testing.T, conn net.PacketConn, server, user, pass string) *pion.Client {
	t.Helper()
	c, err := pion.NewClient(&pion.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, LoggerFactory: pionLog{},
		RTO: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

func udpClient(t *testing.T, s *turn.Server, user, pass string) *pion.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return client(t, conn, addr(s.Port()), user, pass)
}

// relayRoundTrip sends through the relay to a peer UDP socket and back.
func relayRoundTrip(t *testing.T, relay net.PacketConn) {
	t.Helper()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	buf := make([]byte, 1500)
	var from net.Addr
	// UDP: resend a few times if a datagram is lost (bounded).
	for i := 0; ; i++ {
		if _, err := relay.WriteTo([]byte("ping from client"), peer.LocalAddr()); err != nil {
			t.Fatalf("relay write: %v", err)
		}
		peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, f, err := peer.ReadFrom(buf)
		if err == nil {
			if string(buf[:n]) != "ping from client" {
				t.Fatalf("peer got %q", buf[:n])
			}
			from = f
			break
		}
		if i == 4 {
			t.Fatalf("peer received nothing through the relay: %v", err)
		}
	}
	if from.String() != relay.LocalAddr().String() {
		t.Fatalf("peer got data from %s, want the relayed address %s", from, relay.LocalAddr())
	}
	for i := 0; ; i++ {
		if _, err := peer.WriteTo([]byte("pong from peer"), from); err != nil {
			t.Fatal(err)
		}
		relay.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, f, err := relay.ReadFrom(buf)
		if err == nil {
			if string(buf[:n]) != "pong from peer" || f.String() != peer.LocalAddr().String() {
				t.Fatalf("client got %q from %s", buf[:n], f)
			}
			return
		}
		if i == 4 {
			t.Fatalf("client received nothing back through the relay: %v", err)
		}
	}
}

func TestAllocateUDPRelayRoundTrip(t *testing.T) {
	s := start(t)
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	c := udpClient(t, s, user, pass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relay.Close()
	ra := relay.LocalAddr().(*net.UDPAddr)
	if !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) || ra.Port < relayMin || ra.Port > relayMax {
		t.Fatalf("relayed address %s, want 127.0.0.1 in %d-%d", ra, relayMin, relayMax)
	}
	if s.Allocations() != 1 {
		t.Fatalf("Allocations() = %d, want 1", s.Allocations())
	}
	relayRoundTrip(t, relay)
}

func TestAllocateOverTCP(t *testing.T) {
	s := start(t)
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	tc, err := net.Dial("tcp", addr(s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, pion.NewSTUNConn(tc), addr(s.Port()), user, pass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate over TCP: %v", err)
	}
	defer relay.Close()
	relayRoundTrip(t, relay)
}

func TestAllocateOverTLS(t *testing.T) {
	cert, err := tlsutil.LoadOrCreateSelfSigned(t.TempDir(), realm)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, func(c *turn.Config) {
		c.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }}
	})
	if s.TLSPort() == 0 || s.TLSPort() == s.Port() {
		t.Fatalf("TLS port %d (plain %d)", s.TLSPort(), s.Port())
	}
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	tc, err := tls.Dial("tcp", addr(s.TLSPort()), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	if tc.ConnectionState().Version != tls.VersionTLS12 {
		t.Fatal("not TLS 1.2")
	}
	c := client(t, pion.NewSTUNConn(tc), addr(s.TLSPort()), user, pass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	defer relay.Close()
	relayRoundTrip(t, relay)

	// TLS below 1.2 is refused.
	if c, err := tls.Dial("tcp", addr(s.TLSPort()), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}

func TestSTUNBindingReflectsSource(t *testing.T) {
	s := start(t)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, conn, addr(s.Port()), "", "")
	mapped, err := c.SendBindingRequest()
	if err != nil {
		t.Fatalf("binding request: %v", err)
	}
	if mapped.String() != conn.LocalAddr().String() {
		t.Fatalf("XOR-MAPPED-ADDRESS %s, want %s", mapped, conn.LocalAddr())
	}
}

func TestRejectedCredentials(t *testing.T) {
	s := start(t)
	now := time.Now()
	expiredUser, expiredPass, _ := s.Credentials("alice", time.Hour, now.Add(-2*time.Hour))
	goodUser, goodPass, _ := s.Credentials("alice", time.Hour, now)
	otherUser, otherPass, _ := turn.Credentials("another secret", "alice", time.Hour, now)
	for _, tc := range []struct{ name, user, pass string }{
		{"expired", expiredUser, expiredPass},
		{"wrong password", goodUser, goodPass[:len(goodPass)-2] + "AA"},
		{"password of another user", strings.Replace(goodUser, "alice", "mallory", 1), goodPass},
		{"other secret", otherUser, otherPass},
		{"no timestamp", "alice", turn.Password(secret, "alice")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := udpClient(t, s, tc.user, tc.pass)
			if relay, err := c.Allocate(); err == nil {
				relay.Close()
				t.Fatal("allocation succeeded")
			}
			if n := s.Allocations(); n != 0 {
				t.Fatalf("Allocations() = %d", n)
			}
		})
	}
	// The good ones work on the same server.
	c := udpClient(t, s, goodUser, goodPass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("good credentials refused: %v", err)
	}
	relay.Close()
}

func TestExpiryUsesServerClock(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := start(t, func(c *turn.Config) { c.Now = func() time.Time { return now } })
	// Valid by the wall clock but expired by the server's clock.
	user, pass, _ := s.Credentials("alice", 24*time.Hour, now.Add(-25*time.Hour))
	if relay, err := udpClient(t, s, user, pass).Allocate(); err == nil {
		relay.Close()
		t.Fatal("credentials expired by the server clock were accepted")
	}
	user, pass, _ = s.Credentials("alice", time.Minute, now)
	relay, err := udpClient(t, s, user, pass).Allocate()
	if err != nil {
		t.Fatalf("fresh credentials refused: %v", err)
	}
	relay.Close()
}

func TestLoopbackPeerRefusedWhenRelayIsPublic(t *testing.T) {
	// The relay announces a documentation address (it still binds loopback):
	// loopback peers must then be refused, so a client cannot reach the
	// appliance's own local services through the relay.
	s := start(t, func(c *turn.Config) { c.RelayIP = net.IPv4(192, 0, 2, 1) })
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	c := udpClient(t, s, user, pass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if ip := relay.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv4(192, 0, 2, 1)) {
		t.Fatalf("relayed address %s, want the configured relay IP", ip)
	}
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Fatal("permission for a loopback peer granted")
	}
	if err := c.CreatePermission(&net.UDPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 9}); err != nil {
		t.Fatalf("permission for a public peer refused: %v", err)
	}
}

func TestPeerAllowed(t *testing.T) {
	pub := start(t, func(c *turn.Config) { c.RelayIP = net.IPv4(192, 0, 2, 1) })
	dev := start(t)
	for _, tc := range []struct {
		ip       string
		pub, dev bool
	}{
		{"198.51.100.7", true, true},
		{"192.168.1.10", true, true},
		{"127.0.0.1", false, true},
		{"0.0.0.0", false, false},
		{"0.1.2.3", false, false},
		{"224.0.0.1", false, false},
		{"169.254.1.1", false, false},
		{"255.255.255.255", false, false},
		{"::1", false, true},
		{"fe80::1", false, false},
	} {
		ip := net.ParseIP(tc.ip)
		if got := pub.PeerAllowed(ip); got != tc.pub {
			t.Errorf("public relay: PeerAllowed(%s) = %v", tc.ip, got)
		}
		if got := dev.PeerAllowed(ip); got != tc.dev {
			t.Errorf("loopback relay: PeerAllowed(%s) = %v", tc.ip, got)
		}
	}
}

func TestCloseReleasesEverything(t *testing.T) {
	s := start(t)
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	relay, err := udpClient(t, s, user, pass).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	relayAddr := relay.LocalAddr().String()
	tc, err := net.Dial("tcp", addr(s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	// Make sure the server accepted it (a binding request answered).
	c := client(t, pion.NewSTUNConn(tc), addr(s.Port()), "", "")
	if _, err := c.SendBindingRequest(); err != nil {
		t.Fatal(err)
	}
	port := s.Port()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s.Allocations() != 0 {
		t.Fatalf("Allocations() = %d after Close", s.Allocations())
	}
	// The ports are free again: no socket of this process holds them (a
	// test of another package running at the same time may take a freed
	// ephemeral port, which says nothing about Close).
	for _, a := range []string{addr(port), relayAddr} {
		if ours, err := boundByUs("udp", a); err != nil || ours {
			t.Fatalf("UDP %s still bound after Close (%v)", a, err)
		}
	}
	if ours, err := boundByUs("tcp", addr(port)); err != nil || ours {
		t.Fatalf("TCP %s still bound after Close (%v)", addr(port), err)
	}
	// The TCP client connection was closed by the server.
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tc.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatalf("TCP client connection still open after Close: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestTCPConnectionLimitPerIP(t *testing.T) {
	s := start(t, func(c *turn.Config) { c.MaxConnsPerIP = 2 })
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr(s.Port()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// The third is closed at once.
	c, err := net.Dial("tcp", addr(s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("third connection from one address not closed: %v", err)
	}
	// The first two still work.
	cl := client(t, pion.NewSTUNConn(conns[0]), addr(s.Port()), "", "")
	if _, err := cl.SendBindingRequest(); err != nil {
		t.Fatalf("admitted connection does not work: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	for name, cfg := range map[string]turn.Config{
		"no secret":              {Realm: realm},
		"hostname":               {Realm: realm, Secret: secret, ListenAddrs: []string{"localhost"}},
		"wildcard without relay": {Realm: realm, Secret: secret, ListenAddrs: []string{"0.0.0.0"}},
		"IPv6 relay":             {Realm: realm, Secret: secret, RelayIP: net.ParseIP("2001:db8::1")},
		"bad range":              {Realm: realm, Secret: secret, RelayMinPort: 5000, RelayMaxPort: 4000},
	} {
		if s, err := turn.Start(cfg); err == nil {
			s.Close()
			t.Errorf("%s: Start succeeded", name)
		}
	}
}

func TestCredentialsScheme(t *testing.T) {
	now := time.Unix(1700000000, 500)
	user, pass, exp := turn.Credentials("s3cret", "alice", time.Hour, now)
	if user != "1700003600:alice" {
		t.Fatalf("username %q", user)
	}
	// base64(HMAC-SHA1("s3cret", "1700003600:alice")), computed with
	// `printf %s 1700003600:alice | openssl dgst -sha1 -hmac s3cret -binary | base64`.
	if pass != "YAFdW/YDZewZsR1QSgUk2IrfbRI=" {
		t.Fatalf("password %q", pass)
	}
	if !exp.Equal(time.Unix(1700003600, 0)) || exp.Location() != time.UTC {
		t.Fatalf("expires %v", exp)
	}
	if !turn.Verify("s3cret", user, pass, now) || !turn.Verify("s3cret", user, pass, exp) {
		t.Fatal("Verify refused fresh credentials")
	}
	if turn.Verify("s3cret", user, pass, exp.Add(time.Second)) {
		t.Fatal("Verify accepted expired credentials")
	}
	if turn.Verify("other", user, pass, now) {
		t.Fatal("Verify accepted another secret")
	}
	for _, bad := range []string{"", "alice", ":alice", "-5:alice", "17e9:alice", "99999999999999999999:x"} {
		if err := turn.CheckUsername(bad, now); !errors.Is(err, turn.ErrBadUsername) {
			t.Errorf("CheckUsername(%q) = %v", bad, err)
		}
	}
	if err := turn.CheckUsername("1700000000", now.Add(time.Second)); !errors.Is(err, turn.ErrExpired) {
		t.Errorf("CheckUsername(expired) = %v", err)
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := turn.LoadOrCreateSecret(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 2*turn.SecretBytes || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("secret %q is not %d hex digits", a, 2*turn.SecretBytes)
	}
	b, err := turn.LoadOrCreateSecret(ctx, st)
	if err != nil || b != a {
		t.Fatalf("second call: %q, %v; want the stored secret", b, err)
	}
	if v, _ := st.Setting(ctx, store.SettingTURNSecret); v != a {
		t.Fatal("secret not stored under SettingTURNSecret")
	}
	other, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	c, _ := turn.LoadOrCreateSecret(ctx, other)
	if c == a {
		t.Fatal("two data directories got the same secret")
	}
}

func TestNeverLogsSecret(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := start(t, func(c *turn.Config) { c.Logger = log })
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	relay, err := udpClient(t, s, user, pass).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	relay.Close()
	udpClient(t, s, user, "wrong").Allocate()
	s.Close()
	if strings.Contains(buf.String(), secret) || strings.Contains(buf.String(), pass) {
		t.Fatalf("secret or password in the log:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "listening") {
		t.Fatalf("log captured nothing:\n%s", buf.String())
	}
}

// boundByUs reports whether a socket of this process is bound to the local
// address a ("127.0.0.1:port") for proto "udp" or "tcp" (listening or not):
// the kernel's table /proc/net/PROTO gives the socket inodes bound there,
// /proc/self/fd the inodes this process holds.
func boundByUs(proto, a string) (bool, error) {
	ap, err := netip.ParseAddrPort(a)
	if err != nil || !ap.Addr().Is4() {
		return false, fmt.Errorf("not an IPv4 address and port: %q", a)
	}
	ip := ap.Addr().As4()
	// /proc/net shows the address as the hex of its little-endian uint32.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	table, err := os.ReadFile("/proc/net/" + proto)
	if err != nil {
		return false, err
	}
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(table), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == want {
			inodes["socket:["+f[9]+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return false, nil
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false, err
	}
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && inodes[target] {
			return true, nil
		}
	}
	return false, nil
}

// TestBoundByUs: the leak check of TestCloseReleasesEverything sees this
// process's own UDP and TCP sockets, and not once they are closed.
func TestBoundByUs(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ proto, addr string }{{"udp", pc.LocalAddr().String()}, {"tcp", ln.Addr().String()}} {
		if ours, err := boundByUs(c.proto, c.addr); err != nil || !ours {
			t.Fatalf("%s %s open: boundByUs = %v, %v", c.proto, c.addr, ours, err)
		}
	}
	pc.Close()
	ln.Close()
	if ours, err := boundByUs("udp", pc.LocalAddr().String()); err != nil || ours {
		t.Fatalf("closed UDP socket: boundByUs = %v, %v", ours, err)
	}
}
