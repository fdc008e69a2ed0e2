package reach

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/ddns/portmap"
)

var ports = []Port{{"tcp", 5222, "apps"}, {"udp", 3478, "calls"}}

func router(proto, wan string, mappedPorts ...uint16) portmap.Status {
	s := portmap.Status{Protocol: proto, LocalAddr: netip.MustParseAddr("192.168.1.10")}
	if wan != "" {
		s.ExternalIP = netip.MustParseAddr(wan)
	}
	for _, p := range ports {
		ms := portmap.MappingStatus{Mapping: portmap.Mapping{Protocol: p.Protocol, InternalPort: p.Number}}
		for _, m := range mappedPorts {
			if m == p.Number {
				ms.External = m
			}
		}
		if ms.External == 0 {
			ms.Err = "ConflictInMappingEntry"
		}
		s.Mappings = append(s.Mappings, ms)
	}
	return s
}

func TestAssess(t *testing.T) {
	lan := netip.MustParseAddr("192.168.1.10")
	pub := netip.MustParseAddr("20.77.0.2")
	v6 := []netip.Addr{netip.MustParseAddr("2001:db8::10")}
	for _, c := range []struct {
		name string
		o    Observation
		want Kind
		says string
	}{
		{"stun failed", Observation{LAN: lan, PublicErr: "timeout"}, Unknown, "timeout"},
		{"public host", Observation{LAN: pub, Public: pub}, Direct, "public address of its own"},
		{"upnp mapped", Observation{LAN: lan, Public: pub, Router: router("UPnP IGD", "20.77.0.2", 5222, 3478)}, Mapped, "UPnP IGD"},
		{"natpmp partial", Observation{LAN: lan, Public: pub, Router: router("NAT-PMP", "20.77.0.2", 5222)}, Partial, "refused"},
		{"no router", Observation{LAN: lan, Public: pub}, Manual, "did not answer"},
		{"no router, hairpin ok", Observation{LAN: lan, Public: pub, Hairpin: map[uint16]string{5222: "ok"}}, Manual, "already in place"},
		{"cgnat 100.64", Observation{LAN: lan, Public: pub, Router: router("UPnP IGD", "100.64.0.2", 5222, 3478)}, CGNAT, "carrier-grade"},
		{"router hides its address", Observation{LAN: lan, Public: pub, Router: router("UPnP IGD", "", 5222, 3478)}, CGNAT, "not reported"},
		{"public but different", Observation{LAN: lan, Public: pub, Router: router("NAT-PMP", "20.99.0.1", 5222, 3478)}, CGNAT, "20.99.0.1"},
		{"double nat", Observation{LAN: lan, Public: pub, Router: router("UPnP IGD", "192.168.0.2", 5222, 3478)}, DoubleNAT, "second router"},
		{"cgnat with ipv6", Observation{LAN: lan, Public: pub, IPv6: v6, Router: router("UPnP IGD", "100.64.0.2")}, CGNAT, "carrier-grade"},
	} {
		c.o.Ports = ports
		v := Assess(c.o)
		if v.Kind != c.want || !strings.Contains(v.Summary, c.says) {
			t.Errorf("%s: got %s %q, want %s containing %q", c.name, v.Kind, v.Summary, c.want, c.says)
		}
		if v.Kind != Mapped && v.Kind != Direct && len(v.Steps) == 0 {
			t.Errorf("%s: no next steps", c.name)
		}
		if len(v.Ports) != len(ports) {
			t.Errorf("%s: %d port results", c.name, len(v.Ports))
		}
	}
	v := Assess(Observation{LAN: lan, Public: pub, Ports: ports, Router: router("NAT-PMP", "20.77.0.2", 5222), Hairpin: map[uint16]string{5222: "failed", 3478: "ok"}})
	if !v.Ports[0].Mapped || v.Ports[1].Mapped || v.Ports[1].MapErr == "" || v.Ports[0].Hairpin != "failed" || v.Ports[1].Hairpin != "" {
		t.Errorf("port results: %+v", v.Ports)
	}
	if !strings.Contains(strings.Join(v.Steps, " "), "5222/tcp, 3478/udp") || !strings.Contains(strings.Join(v.Steps, " "), lan.String()) {
		t.Errorf("steps do not name the ports and the LAN address: %q", v.Steps)
	}
	if v := Assess(Observation{LAN: lan, Public: pub, Ports: ports, IPv6: v6, Router: router("UPnP IGD", "100.64.0.2")}); !strings.Contains(strings.Join(v.Steps, " "), "IPv6") {
		t.Errorf("CGNAT with IPv6 does not mention it: %q", v.Steps)
	}
}
