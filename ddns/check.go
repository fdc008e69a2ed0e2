package ddns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CheckConfig is what CheckRecords compares the DNS with.
type CheckConfig struct {
	// Domain is the XMPP domain (RFC 6120 §2.1). Required.
	Domain string
	// Components are the component subdomains ("groups.example.org",
	// "upload.example.org", ...): each must be a CNAME to Domain or resolve
	// to Domain's addresses.
	Components []string
	// C2SPort, C2STLSPort and S2SPort are the ports the SRV records
	// _xmpp-client._tcp (RFC 6120 §3.2.1), _xmpps-client._tcp (XEP-0368)
	// and _xmpp-server._tcp must name; 0 skips that record.
	C2SPort, C2STLSPort, S2SPort uint16
	// IPv4 and IPv6 are the public addresses the domain must resolve to
	// (STUN, the global IPv6 address); invalid ones are unknown, and the
	// records found are only shown.
	IPv4, IPv6 netip.Addr
	// Resolver answers the queries; nil uses net.DefaultResolver (the
	// system's resolver).
	Resolver *net.Resolver
	// Timeout bounds each query; 0 means 5 seconds.
	Timeout time.Duration
}

// RecordCheck is the result for one DNS record.
type RecordCheck struct {
	// Name is the owner name, without the final dot.
	Name string `json:"name"`
	// Type is "A", "AAAA", "SRV" or "CNAME" (for a component name, which
	// may also hold the domain's addresses instead).
	Type string `json:"type"`
	// Want is what the record should hold, in zone-file form ("0 5 5222
	// example.org.") or in words.
	Want string `json:"want"`
	// Got is what the DNS answered ("" when nothing).
	Got string `json:"got"`
	// OK reports that the record is as wanted.
	OK bool `json:"ok"`
	// Problem says in plain words what is wrong ("" when OK).
	Problem string `json:"problem,omitempty"`
}

// ResolverAt returns a resolver that sends every query to the DNS server
// at addr ("host:port"; port 53 when missing) with Go's own resolver, over
// UDP and TCP as the query needs; "" returns net.DefaultResolver.
func ResolverAt(addr string) *net.Resolver {
	if addr == "" {
		return net.DefaultResolver
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "53")
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// CheckRecords resolves the records a Hearth at cfg.Domain needs and
// compares them with cfg: the domain's A and AAAA records, the three SRV
// records (target the domain, or a name with the same addresses, and the
// configured port) and each component name. It returns one RecordCheck per
// record, in that order; it never fails as a whole (a query error is that
// record's Problem). The queries run one after another, each bounded by
// cfg.Timeout, and ctx bounds them all.
func CheckRecords(ctx context.Context, cfg CheckConfig) []RecordCheck {
	r := cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	domain := normName(cfg.Domain)
	lookupIP := func(name, network string) ([]netip.Addr, error) {
		qctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		addrs, err := r.LookupNetIP(qctx, network, fqdn(name))
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		return slices.Compact(addrs), err
	}
	var out []RecordCheck

	// A and AAAA of the domain.
	v4, err4 := lookupIP(domain, "ip4")
	v6, err6 := lookupIP(domain, "ip6")
	domainAddrs := append(append([]netip.Addr(nil), v4...), v6...)
	for _, f := range []struct {
		typ, family string
		want        netip.Addr
		got         []netip.Addr
		err, other  error
		otherOK     bool
	}{
		{"A", "IPv4", cfg.IPv4, v4, err4, err6, len(v6) > 0},
		{"AAAA", "IPv6", cfg.IPv6, v6, err6, err4, len(v4) > 0},
	} {
		c := RecordCheck{Name: domain, Type: f.typ, Got: addrList(f.got)}
		if f.want.IsValid() {
			c.Want = f.want.String()
		} else {
			c.Want = "your public " + f.family + " address (not known to Hearth)"
		}
		switch {
		case len(f.got) > 0 && f.want.IsValid() && !slices.Contains(f.got, f.want):
			c.Problem = fmt.Sprintf("%s points to %s, but Hearth's public %s address is %s.", domain, c.Got, f.family, f.want)
		case len(f.got) > 0:
			c.OK = true
		case f.err != nil && !isNotFound(f.err):
			c.Problem = "The DNS lookup failed: " + lookupText(f.err)
		case f.want.IsValid():
			c.Problem = fmt.Sprintf("There is no %s record for %s: create one with %s.", f.typ, domain, f.want)
		case f.otherOK:
			// Unknown address of this family, and the other one is there.
			c.OK = true
			c.Got = "none"
		default:
			c.Problem = fmt.Sprintf("There is no %s record for %s: create one with your public %s address.", f.typ, domain, f.family)
		}
		out = append(out, c)
	}

	// SRV records: RFC 6120 §3.2.1, XEP-0368.
	for _, s := range []struct {
		service string
		port    uint16
		purpose string
	}{
		{"xmpp-client", cfg.C2SPort, "chat apps"},
		{"xmpps-client", cfg.C2STLSPort, "chat apps using direct TLS"},
		{"xmpp-server", cfg.S2SPort, "other servers"},
	} {
		if s.port == 0 {
			continue
		}
		name := "_" + s.service + "._tcp." + domain
		c := RecordCheck{Name: name, Type: "SRV", Want: "0 5 " + strconv.Itoa(int(s.port)) + " " + domain + "."}
		qctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		_, srvs, err := r.LookupSRV(qctx, "", "", fqdn(name))
		cancel()
		var got []string
		for _, rec := range srvs {
			got = append(got, fmt.Sprintf("%d %d %d %s", rec.Priority, rec.Weight, rec.Port, rec.Target))
		}
		c.Got = strings.Join(got, ", ")
		switch {
		case err != nil && isNotFound(err) || err == nil && len(srvs) == 0:
			c.Problem = fmt.Sprintf("The SRV record is missing: %s will not find Hearth's port %d by the domain name.", s.purpose, s.port)
		case err != nil:
			c.Problem = "The DNS lookup failed: " + lookupText(err)
		default:
			c.OK, c.Problem = srvMatches(srvs, domain, s.port, domainAddrs, lookupIP)
		}
		out = append(out, c)
	}

	// Component names: a CNAME to the domain, or the domain's addresses.
	for _, comp := range cfg.Components {
		comp = normName(comp)
		c := RecordCheck{Name: comp, Type: "CNAME", Want: domain + "."}
		qctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		cname, err := r.LookupCNAME(qctx, fqdn(comp))
		cancel()
		switch {
		case err != nil && isNotFound(err):
			c.Problem = fmt.Sprintf("%s does not exist: create a CNAME record pointing to %s.", comp, domain)
		case err != nil:
			c.Problem = "The DNS lookup failed: " + lookupText(err)
		case normName(cname) == domain:
			c.Got, c.OK = domain+".", true
		default:
			addrs, err := lookupIP(comp, "ip")
			c.Got = addrList(addrs)
			if normName(cname) != comp {
				c.Got = fqdn(cname) + " (" + c.Got + ")"
			}
			switch {
			case err != nil && !isNotFound(err):
				c.Problem = "The DNS lookup failed: " + lookupText(err)
			case len(addrs) == 0:
				c.Problem = fmt.Sprintf("%s has no address: create a CNAME record pointing to %s.", comp, domain)
			case len(domainAddrs) > 0 && subset(addrs, domainAddrs):
				c.OK = true
			default:
				c.Problem = fmt.Sprintf("%s points elsewhere than %s: make it a CNAME record pointing to %s.", comp, domain, domain)
			}
		}
		out = append(out, c)
	}
	return out
}

// srvMatches reports whether one of srvs names port and the domain (or a
// target with the domain's addresses).
func srvMatches(srvs []*net.SRV, domain string, port uint16, domainAddrs []netip.Addr, lookupIP func(string, string) ([]netip.Addr, error)) (bool, string) {
	var wrongPort []string
	for _, rec := range srvs {
		target := normName(rec.Target)
		if rec.Port != port {
			wrongPort = append(wrongPort, strconv.Itoa(int(rec.Port)))
			continue
		}
		if target == domain {
			return true, ""
		}
		if addrs, err := lookupIP(target, "ip"); err == nil && len(addrs) > 0 && len(domainAddrs) > 0 && subset(addrs, domainAddrs) {
			return true, ""
		}
	}
	if len(wrongPort) > 0 {
		return false, fmt.Sprintf("The SRV record names port %s, but Hearth listens on port %d.", strings.Join(wrongPort, ", "), port)
	}
	return false, fmt.Sprintf("The SRV record points to another host than %s.", domain)
}

// subset reports whether every element of a is in b.
func subset(a, b []netip.Addr) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func addrList(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// isNotFound reports a name or record that does not exist (NXDOMAIN or no
// data).
func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// lookupText is a lookup error in plain words.
func lookupText(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsTimeout:
			return "the DNS server did not answer."
		case de.IsNotFound:
			return "the name does not exist."
		}
		return de.Err + "."
	}
	return err.Error()
}
