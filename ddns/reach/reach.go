// Package reach decides, in plain words, whether Hearth can be reached from
// the internet: behind a router that mapped its ports (UPnP IGD / NAT-PMP),
// behind one that needs manual port forwarding, behind carrier-grade NAT
// (RFC 6598 shared address space 100.64.0.0/10) or a second home router
// (double NAT), or on a public address. The wizard and admin pages show the
// Verdict; `hearth netcheck` prints it.
package reach

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/hearthxmpp/hearth/ddns/portmap"
)

// Kind classifies the home connection.
type Kind string

// The kinds of connection Assess distinguishes.
const (
	// Direct: Hearth's host has the public address itself.
	Direct Kind = "direct"
	// Mapped: the router reports the public address and forwards every
	// wanted port (UPnP IGD or NAT-PMP).
	Mapped Kind = "mapped"
	// Partial: the router speaks UPnP/NAT-PMP but refused some ports.
	Partial Kind = "partial"
	// Manual: no port-mapping service; ports must be forwarded by hand.
	Manual Kind = "manual"
	// CGNAT: the provider puts the router behind its own NAT; port
	// forwarding at home cannot help.
	CGNAT Kind = "cgnat"
	// DoubleNAT: another router (often the provider's modem) sits between
	// the home router and the internet.
	DoubleNAT Kind = "double-nat"
	// Unknown: the public address could not be learned.
	Unknown Kind = "unknown"
)

// Port is one port Hearth needs reachable from the internet.
type Port struct {
	// Protocol is "tcp" or "udp".
	Protocol string
	// Number is the port, e.g. 5222.
	Number uint16
	// Purpose says what breaks without it, e.g. "phones and apps (XMPP)".
	Purpose string
}

// PortResult is the verdict for one Port.
type PortResult struct {
	Port Port
	// Mapped is true when the router accepted a mapping for it.
	Mapped bool
	// MapErr is the router's refusal, "" when mapped or no router.
	MapErr string
	// Hairpin is "ok" when a TCP connection from the LAN to the public
	// address reached Hearth, "failed" when it did not (many routers do not
	// loop back, so this alone does not prove the port closed), "" when not
	// tried (UDP, or no public address).
	Hairpin string
}

// Observation is what was measured; Assess turns it into a Verdict.
type Observation struct {
	// LAN is Hearth's own IPv4 address on the home network.
	LAN netip.Addr
	// Router is the port-mapping state (Protocol "" when no router answered).
	Router portmap.Status
	// Public is the IPv4 address the internet sees (STUN, RFC 8489), and
	// PublicErr why it is unknown.
	Public    netip.Addr
	PublicErr string
	// IPv6 lists the global IPv6 addresses of Hearth's interfaces.
	IPv6 []netip.Addr
	// Ports are the wanted ports; Hairpin the LAN-to-public TCP results by
	// port number ("ok"/"failed").
	Ports   []Port
	Hairpin map[uint16]string
}

// Verdict is the plain-language result.
type Verdict struct {
	Kind Kind
	// Summary is one or two sentences for the family's admin.
	Summary string
	// Steps says what to do next, in order; empty when nothing is needed.
	Steps []string
	// Public and RouterWAN are the addresses the verdict rests on.
	Public, RouterWAN netip.Addr
	Ports             []PortResult
	// IPv6 is true when a global IPv6 address offers a second way in.
	IPv6 bool
}

var (
	sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598
)

// Assess classifies an Observation. It is a pure function: the same
// observation always gives the same verdict.
func Assess(o Observation) Verdict {
	v := Verdict{Public: o.Public, RouterWAN: o.Router.ExternalIP, IPv6: len(o.IPv6) > 0}
	mapped := map[string]portmap.MappingStatus{}
	for _, m := range o.Router.Mappings {
		mapped[m.Mapping.Protocol+"/"+strconv.Itoa(int(m.Mapping.InternalPort))] = m
	}
	allMapped := o.Router.Protocol != ""
	for _, p := range o.Ports {
		r := PortResult{Port: p, Hairpin: o.Hairpin[p.Number]}
		if p.Protocol != "tcp" {
			r.Hairpin = ""
		}
		if ms, ok := mapped[p.Protocol+"/"+strconv.Itoa(int(p.Number))]; ok {
			r.Mapped, r.MapErr = ms.External != 0, ms.Err
		}
		if !r.Mapped {
			allMapped = false
		}
		v.Ports = append(v.Ports, r)
	}
	forward := fmt.Sprintf("In your router's settings, forward these ports to %s: %s.", o.LAN, portList(o.Ports))
	ipv6Note := ""
	if v.IPv6 {
		ipv6Note = " Hearth also has a public IPv6 address: devices with IPv6 can reach it if the router's IPv6 firewall lets the same ports in."
	}
	wan := o.Router.ExternalIP
	switch {
	case !o.Public.IsValid():
		v.Kind = Unknown
		v.Summary = "Hearth could not learn its public address (" + nonEmpty(o.PublicErr, "no answer from the STUN servers") + "), so it cannot tell whether it is reachable."
		v.Steps = []string{"Check that Hearth can reach the internet, then check again."}
	case o.LAN == o.Public:
		v.Kind = Direct
		v.Summary = "Hearth has a public address of its own (" + o.Public.String() + "): nothing sits between it and the internet."
		v.Steps = []string{"Make sure no firewall blocks these ports: " + portList(o.Ports) + "."}
	case o.Router.Protocol != "" && wan.IsValid() && sharedSpace.Contains(wan):
		v.Kind = CGNAT
		v.Summary = "Your internet provider shares one public address among many customers (carrier-grade NAT: your router's internet address " + wan.String() + " is not public). Nobody can reach Hearth from outside through IPv4, whatever the router does."
		v.Steps = cgnatSteps(v.IPv6)
	case o.Router.Protocol != "" && wan.IsValid() && wan.IsPrivate():
		v.Kind = DoubleNAT
		v.Summary = "There is a second router in front of yours (your router's internet address " + wan.String() + " is a private one, often the provider's modem)."
		v.Steps = []string{
			"Put the provider's modem in bridge mode, or forward the same ports on it to your router's address " + wan.String() + ".",
			forward,
		}
	case o.Router.Protocol != "" && (!wan.IsValid() || wan != o.Public):
		// miniupnpd and others report no address when theirs is not public.
		v.Kind = CGNAT
		v.Summary = "Your router's internet address (" + nonEmpty(addrOr(wan), "not reported") + ") is not the public address the internet sees (" + o.Public.String() + "): your provider puts another NAT in front of it (carrier-grade NAT or a second router)."
		v.Steps = cgnatSteps(v.IPv6)
	case o.Router.Protocol != "" && allMapped:
		v.Kind = Mapped
		v.Summary = "Your router forwards Hearth's ports automatically (" + o.Router.Protocol + ") on your public address " + o.Public.String() + "." + ipv6Note
	case o.Router.Protocol != "":
		v.Kind = Partial
		v.Summary = "Your router (" + o.Router.Protocol + ") refused some of Hearth's ports." + ipv6Note
		v.Steps = []string{forward}
	default:
		v.Kind = Manual
		v.Summary = "Your router did not answer UPnP or NAT-PMP requests, so Hearth cannot open its ports itself. Your public address is " + o.Public.String() + "." + ipv6Note
		v.Steps = []string{
			forward,
			"Or turn on UPnP (sometimes called \"automatic port forwarding\") or NAT-PMP in the router, then check again.",
		}
		if anyHairpin(v.Ports, "ok") {
			v.Summary += " A connection to the public address reached Hearth, so some forwarding is already in place."
		}
	}
	return v
}

func cgnatSteps(ipv6 bool) []string {
	s := []string{
		"Ask your provider for a public IPv4 address (some call it \"dual stack\" instead of \"DS-Lite\"; some charge for it).",
	}
	if ipv6 {
		s = append(s, "Meanwhile Hearth is reachable over IPv6 where the other side has IPv6: allow the ports in the router's IPv6 firewall.")
	}
	return append(s, "Or run Hearth on a small rented server (VPS) instead of at home.")
}

func portList(ps []Port) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += strconv.Itoa(int(p.Number)) + "/" + p.Protocol
	}
	return s
}

func anyHairpin(rs []PortResult, want string) bool {
	for _, r := range rs {
		if r.Hairpin == want {
			return true
		}
	}
	return false
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func addrOr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// HairpinTCP connects from this host to public:port and reports "ok" when
// the connection opens within timeout, "failed" otherwise.
func HairpinTCP(ctx context.Context, public netip.Addr, port uint16, timeout time.Duration) string {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(public, port).String())
	if err != nil {
		return "failed"
	}
	c.Close()
	return "ok"
}
