package ddns_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/ddns"
	"github.com/pion/turn/v3"
)

// startSTUN runs pion's TURN server (which answers STUN Binding requests,
// RFC 8489) on a UDP port of 127.0.0.1 and returns its address.
func startSTUN(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:       "hearth.test",
		AuthHandler: func(string, string, net.Addr) ([]byte, bool) { return nil, false },
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1",
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return pc.LocalAddr().String()
}

// closedUDPPort returns a 127.0.0.1 UDP address nobody listens on.
func closedUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestSTUNAddress(t *testing.T) {
	addr := startSTUN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := ddns.STUNAddress(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	// The reflexive address of a loopback client is its loopback address.
	if got != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("STUN mapped address = %v, want 127.0.0.1", got)
	}
}

// A server that does not answer is skipped for the next one; the router's
// different external address produces a warning; IPv6 comes from the
// interfaces, skipping temporary, ULA and link-local addresses.
func TestDiscover(t *testing.T) {
	stunAddr := startSTUN(t)
	d := &ddns.Discoverer{
		STUNServers: []string{closedUDPPort(t), stunAddr},
		RouterAddress: func(context.Context) (netip.Addr, error) {
			return netip.MustParseAddr("100.64.1.2"), nil // behind carrier-grade NAT
		},
		InterfaceAddrs: func() ([]ddns.InterfaceAddr, error) {
			return []ddns.InterfaceAddr{
				{Interface: "eth0", Addr: netip.MustParseAddr("192.168.1.10")},
				{Interface: "eth0", Addr: netip.MustParseAddr("fe80::1")},
				{Interface: "eth0", Addr: netip.MustParseAddr("fd12:3456::1")},
				{Interface: "eth0", Addr: netip.MustParseAddr("2001:db8::abcd"), Temporary: true},
				{Interface: "eth0", Addr: netip.MustParseAddr("2001:db8::dead"), Deprecated: true},
				{Interface: "eth0", Addr: netip.MustParseAddr("2001:db8::1")},
			}, nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := d.Discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.IPv4 != netip.MustParseAddr("127.0.0.1") || got.Source != "stun "+stunAddr {
		t.Errorf("IPv4 = %v from %q, want 127.0.0.1 from the second STUN server", got.IPv4, got.Source)
	}
	if got.IPv6 != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("IPv6 = %v, want the stable global 2001:db8::1", got.IPv6)
	}
	if got.RouterIPv4 != netip.MustParseAddr("100.64.1.2") || !strings.Contains(got.Warning, "carrier-grade NAT") {
		t.Errorf("router %v, warning %q: want the CGNAT warning", got.RouterIPv4, got.Warning)
	}
}

// Without any STUN answer the router's public address is used; with
// neither, Discover fails.
func TestDiscoverFallbacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	none := func() ([]ddns.InterfaceAddr, error) { return nil, nil }
	d := &ddns.Discoverer{
		STUNServers:    []string{closedUDPPort(t)},
		RouterAddress:  func(context.Context) (netip.Addr, error) { return netip.MustParseAddr("203.0.113.7"), nil },
		InterfaceAddrs: none,
	}
	got, err := d.Discover(ctx)
	if err != nil || got.IPv4 != netip.MustParseAddr("203.0.113.7") || got.Source != "router" {
		t.Fatalf("Discover = %+v, %v; want the router's address", got, err)
	}
	d.RouterAddress = nil
	if got, err := d.Discover(ctx); err == nil {
		t.Fatalf("Discover without any source = %+v, want an error", got)
	}
}

func TestSystemInterfaceAddrs(t *testing.T) {
	addrs, err := ddns.SystemInterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if !a.Addr.IsValid() || a.Addr.IsLoopback() {
			t.Errorf("unexpected address %+v", a)
		}
	}
	// Whatever this machine has, the chosen address is never a ULA or
	// link-local one.
	if ip := ddns.GlobalIPv6(addrs); ip.IsValid() && (ip.IsLinkLocalUnicast() || ip.IsPrivate()) {
		t.Errorf("GlobalIPv6 chose %v", ip)
	}
}
