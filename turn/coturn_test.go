package turn_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"github.com/hearthxmpp/hearth/turn"
)

// uclient returns the path of coturn's turnutils_uclient (Debian package
// coturn). With HEARTH_INTEROP=1 a missing binary fails the test; without it
// the test is skipped, as it needs the Debian tool.
func uclient(t *testing.T) string {
	t.Helper()
	if os.Getenv("HEARTH_INTEROP") == "" {
		t.Skip("set HEARTH_INTEROP=1 to run against coturn's turnutils_uclient")
	}
	p, err := exec.LookPath("turnutils_uclient")
	if err != nil {
		t.Fatalf("HEARTH_INTEROP=1 but turnutils_uclient is missing (apt-get install coturn): %v", err)
	}
	return p
}

// echoPeer answers every datagram with the same bytes, like coturn's
// turnutils_peer; it stops when the test ends.
func echoPeer(t *testing.T) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr)
}

var lostRE = regexp.MustCompile(`Total lost packets (\d+) \(`)
var sentRE = regexp.MustCompile(`Total transmit time is \d+`)

// runUclient runs turnutils_uclient with args against the server and
// checks that every message came back through the relay.
func runUclient(t *testing.T, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	t.Logf("turnutils_uclient %v:\n%s", args, out)
	if err != nil {
		t.Fatalf("turnutils_uclient failed: %v", err)
	}
	m := lostRE.FindSubmatch(out)
	if m == nil || !sentRE.Match(out) {
		t.Fatal("turnutils_uclient did not report its totals")
	}
	if n, _ := strconv.Atoi(string(m[1])); n != 0 {
		t.Fatalf("turnutils_uclient lost %d packets", n)
	}
}

// TestCoturnUclient drives Hearth's TURN server with coturn's own test
// client: over UDP and TCP, with credentials from Credentials (-u/-w) and
// with coturn computing them itself from the shared secret (-W, its
// use-auth-secret scheme), relaying to an echo peer and client to client.
func TestCoturnUclient(t *testing.T) {
	bin := uclient(t)
	cert, err := tlsutil.LoadOrCreateSelfSigned(t.TempDir(), realm)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, func(c *turn.Config) { c.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}} })
	user, pass, _ := s.Credentials("alice", time.Hour, time.Now())
	oldUser, oldPass, _ := s.Credentials("alice", time.Hour, time.Now().Add(-2*time.Hour))
	peer := echoPeer(t)
	port := strconv.Itoa(s.Port())
	peerArgs := []string{"-e", peer.IP.String(), "-r", strconv.Itoa(peer.Port)}
	common := []string{"-p", port, "-n", "20", "-l", "120", "-z", "5", "-c"}
	cases := []struct {
		name string
		args []string
	}{
		{"udp rest credentials", append(append([]string{"-u", user, "-w", pass}, peerArgs...), common...)},
		{"tcp rest credentials", append(append([]string{"-t", "-u", user, "-w", pass}, peerArgs...), common...)},
		{"tls rest credentials", append(append([]string{"-t", "-S", "-u", user, "-w", pass}, peerArgs...), append(common, "-p", strconv.Itoa(s.TLSPort()))...)},
		{"udp shared secret", append(append([]string{"-u", "bob", "-W", secret}, peerArgs...), common...)},
		{"udp client to client", append([]string{"-y", "-u", user, "-w", pass}, common...)},
		{"udp channels and permissions", append(append([]string{"-G", "-u", user, "-w", pass}, peerArgs...), common...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runUclient(t, bin, append(tc.args, "127.0.0.1")...)
		})
	}
	// The same client with expired credentials, a wrong password or
	// someone else's secret allocates nothing.
	for _, args := range [][]string{
		{"-u", oldUser, "-w", oldPass},
		{"-u", user, "-w", pass + "x"},
		{"-u", "bob", "-W", "not the secret"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, bin, append(append(args, peerArgs...), "-p", port, "-n", "2", "-c", "127.0.0.1")...).CombinedOutput()
		cancel()
		t.Logf("turnutils_uclient %v (must fail): %v\n%s", args, err, out)
		if err == nil || lostRE.Match(out) {
			t.Errorf("turnutils_uclient %v succeeded", args)
		}
	}
}
