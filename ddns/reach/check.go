package reach

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/hearthxmpp/hearth/ddns"
	"github.com/hearthxmpp/hearth/ddns/portmap"
)

// CheckConfig says what Check measures.
type CheckConfig struct {
	// Ports are the ports Hearth needs reachable.
	Ports []Port
	// STUNServers ("host:port") are asked in order for the public IPv4.
	STUNServers []string
	// Router is the port-mapping manager; nil when mapping is off. Check
	// uses its current Status (call Refresh first for fresh results).
	Router *portmap.Manager
	// HairpinTimeout bounds each LAN-to-public connection attempt; 0 means
	// 3 s.
	HairpinTimeout time.Duration
}

// Check measures the connection (public address by STUN, the router's
// state, global IPv6, LAN-to-public TCP connections) and assesses it. It
// takes at most a few seconds per STUN server and per TCP port.
func Check(ctx context.Context, cfg CheckConfig) Verdict {
	var o Observation
	o.Ports = cfg.Ports
	if cfg.Router != nil {
		o.Router = cfg.Router.Status()
	}
	for _, srv := range cfg.STUNServers {
		a, err := ddns.STUNAddress(ctx, srv)
		if err == nil {
			o.Public, o.PublicErr = a, ""
			break
		}
		o.PublicErr = srv + ": " + err.Error()
	}
	if len(cfg.STUNServers) == 0 {
		o.PublicErr = "no STUN servers configured"
	}
	o.LAN = o.Router.LocalAddr
	if !o.LAN.IsValid() && len(cfg.STUNServers) > 0 {
		o.LAN = sourceAddr(cfg.STUNServers[0])
	}
	if ifs, err := ddns.SystemInterfaceAddrs(); err == nil {
		if a := ddns.GlobalIPv6(ifs); a.IsValid() {
			o.IPv6 = []netip.Addr{a}
		}
	}
	if o.Public.IsValid() {
		timeout := cfg.HairpinTimeout
		if timeout <= 0 {
			timeout = 3 * time.Second
		}
		o.Hairpin = map[uint16]string{}
		for _, p := range cfg.Ports {
			if p.Protocol == "tcp" {
				o.Hairpin[p.Number] = HairpinTCP(ctx, o.Public, p.Number, timeout)
			}
		}
	}
	return Assess(o)
}

// sourceAddr is the local IPv4 address the kernel uses towards server
// (no packet is sent: a UDP "connection" only picks the route).
func sourceAddr(server string) netip.Addr {
	c, err := net.Dial("udp4", server)
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}
