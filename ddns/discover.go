package ddns

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pion/stun/v2"
)

// DefaultSTUNServers are asked, in order, for the public IPv4 address when
// Discoverer.STUNServers is empty.
var DefaultSTUNServers = []string{"stun.nextcloud.com:3478", "stun.l.google.com:19302"}

// RouterAddressFunc returns the external IPv4 address the home router reports
// (UPnP IGD GetExternalIPAddress, NAT-PMP or PCP), filled in by the router
// port-mapping code. An invalid address with a nil error means "unknown".
type RouterAddressFunc func(ctx context.Context) (netip.Addr, error)

// InterfaceAddr is one address configured on a local interface.
type InterfaceAddr struct {
	// Interface is the interface name ("eth0").
	Interface string
	// Addr is the address, without zone.
	Addr netip.Addr
	// Temporary marks an RFC 8981 temporary (privacy) IPv6 address, which
	// changes daily and must not go into DNS.
	Temporary bool
	// Deprecated marks an address past its preferred lifetime (RFC 4862 §5.5.4).
	Deprecated bool
}

// Addresses is what one discovery found.
type Addresses struct {
	// IPv4 is the public IPv4 address: the STUN answer, or the router's
	// external address when no STUN server answered. Invalid if unknown.
	IPv4 netip.Addr
	// IPv6 is a global, stable IPv6 address of this machine; invalid if none.
	IPv6 netip.Addr
	// RouterIPv4 is what the router reported (RouterAddressFunc); invalid if
	// there is no hook or it did not answer.
	RouterIPv4 netip.Addr
	// Source names where IPv4 came from: "stun HOST:PORT" or "router".
	Source string
	// Warning explains a discrepancy worth showing to the operator, such as a
	// router whose external address is not the public one (another NAT, e.g.
	// carrier-grade NAT, RFC 6598: inbound connections will not arrive).
	Warning string
}

// Equal reports whether a and b publish the same addresses.
func (a Addresses) Equal(b Addresses) bool { return a.IPv4 == b.IPv4 && a.IPv6 == b.IPv6 }

// Discoverer finds the public addresses. The zero value asks
// DefaultSTUNServers and reads the system's interfaces.
type Discoverer struct {
	// STUNServers are "host:port" STUN servers (RFC 8489 over UDP), tried in
	// order until one answers; empty uses DefaultSTUNServers.
	STUNServers []string
	// RouterAddress, if set, cross-checks the STUN answer with the router's
	// external address.
	RouterAddress RouterAddressFunc
	// InterfaceAddrs lists local addresses; nil uses SystemInterfaceAddrs.
	InterfaceAddrs func() ([]InterfaceAddr, error)
	// NoIPv6 skips IPv6 discovery (no AAAA records).
	NoIPv6 bool
	// Logger receives debug logs; nil uses slog.Default().
	Logger *slog.Logger
}

// Discover returns the current public addresses. The error is non-nil only
// when neither an IPv4 nor an IPv6 address was found; it then joins the
// reasons.
func (d *Discoverer) Discover(ctx context.Context) (Addresses, error) {
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	var out Addresses
	var errs []error
	servers := d.STUNServers
	if len(servers) == 0 {
		servers = DefaultSTUNServers
	}
	for _, s := range servers {
		a, err := STUNAddress(ctx, s)
		if err != nil {
			log.Debug("ddns: STUN server did not answer", "server", s, "err", err)
			errs = append(errs, fmt.Errorf("STUN %s: %w", s, err))
			continue
		}
		if a.Is4() {
			out.IPv4, out.Source = a, "stun "+s
			break
		}
	}
	if d.RouterAddress != nil {
		r, err := d.RouterAddress(ctx)
		switch {
		case err != nil:
			log.Debug("ddns: router did not report its external address", "err", err)
		case r.IsValid():
			out.RouterIPv4 = r.Unmap()
		}
	}
	if out.RouterIPv4.IsValid() {
		switch {
		case !out.IPv4.IsValid() && isPublic(out.RouterIPv4):
			out.IPv4, out.Source = out.RouterIPv4, "router"
		case out.IPv4.IsValid() && out.RouterIPv4 != out.IPv4:
			out.Warning = fmt.Sprintf("the router's external address %s is not the public address %s: "+
				"another NAT (carrier-grade NAT?) sits between the router and the Internet, so connections from outside cannot reach Hearth over IPv4",
				out.RouterIPv4, out.IPv4)
		}
	}
	if !d.NoIPv6 {
		list := d.InterfaceAddrs
		if list == nil {
			list = SystemInterfaceAddrs
		}
		addrs, err := list()
		if err != nil {
			errs = append(errs, fmt.Errorf("interfaces: %w", err))
		} else {
			out.IPv6 = GlobalIPv6(addrs)
		}
	}
	if !out.IPv4.IsValid() && !out.IPv6.IsValid() {
		if len(errs) == 0 {
			errs = append(errs, errors.New("no public IPv4 or global IPv6 address"))
		}
		return out, errors.Join(errs...)
	}
	return out, nil
}

// isPublic reports whether a is a globally routable unicast address (not
// private, loopback, link-local, CGNAT or unspecified).
func isPublic(a netip.Addr) bool {
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	if a.Is4() && cgnat.Contains(a) {
		return false
	}
	return true
}

var (
	cgnat = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598 shared address space
	ula   = netip.MustParsePrefix("fc00::/7")      // RFC 4193 unique local
)

// GlobalIPv6 picks the address to publish in AAAA records: the first global
// unicast IPv6 address that is not unique-local (fc00::/7), link-local,
// temporary or deprecated; invalid if there is none. Order is kept, so the
// caller's (the kernel's) order decides between several.
func GlobalIPv6(addrs []InterfaceAddr) netip.Addr {
	for _, a := range addrs {
		ip := a.Addr.Unmap()
		if !ip.Is6() || !ip.IsGlobalUnicast() || ula.Contains(ip) || a.Temporary || a.Deprecated {
			continue
		}
		return ip.WithZone("")
	}
	return netip.Addr{}
}

// Linux IFA_F_* flags in /proc/net/if_inet6 (include/uapi/linux/if_addr.h).
const (
	ifaTemporary  = 0x01
	ifaDADFailed  = 0x08
	ifaDeprecated = 0x20
	ifaTentative  = 0x40
)

// SystemInterfaceAddrs lists the addresses of the interfaces that are up
// (loopback excluded). On Linux, IPv6 addresses come from /proc/net/if_inet6,
// which tells temporary and deprecated addresses apart; elsewhere they come
// from net.Interfaces without those flags.
func SystemInterfaceAddrs() ([]InterfaceAddr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	up := map[string]bool{}
	var out []InterfaceAddr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		up[ifc.Name] = true
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			pn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(pn.IP)
			if !ok {
				continue
			}
			out = append(out, InterfaceAddr{Interface: ifc.Name, Addr: ip.Unmap()})
		}
	}
	flags, err := procInet6()
	if err != nil {
		return out, nil // not Linux, or /proc unavailable: no flags
	}
	kept := out[:0]
	for _, a := range out {
		if a.Addr.Is6() {
			continue
		}
		kept = append(kept, a)
	}
	for _, f := range flags {
		if !up[f.Interface] {
			continue
		}
		kept = append(kept, f)
	}
	return kept, nil
}

// procInet6 parses /proc/net/if_inet6: "address ifindex prefixlen scope
// flags name" per line, hexadecimal.
func procInet6() ([]InterfaceAddr, error) {
	f, err := os.Open("/proc/net/if_inet6")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []InterfaceAddr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		raw, err := hex.DecodeString(fields[0])
		if err != nil || len(raw) != 16 {
			continue
		}
		fl, err := strconv.ParseUint(fields[4], 16, 32)
		if err != nil {
			continue
		}
		if fl&(ifaTentative|ifaDADFailed) != 0 {
			continue
		}
		out = append(out, InterfaceAddr{
			Interface:  fields[5],
			Addr:       netip.AddrFrom16([16]byte(raw)),
			Temporary:  fl&ifaTemporary != 0,
			Deprecated: fl&ifaDeprecated != 0,
		})
	}
	return out, sc.Err()
}

// STUN retransmission: RFC 8489 §6.2.1 with a shorter budget, since another
// server is tried next: requests at 0, 500 ms, 1.5 s, then wait 1.6 s more.
var stunRTO = []time.Duration{500 * time.Millisecond, time.Second, 1600 * time.Millisecond}

// STUNAddress sends a STUN Binding request (RFC 8489 §3) over UDP/IPv4 to
// server ("host:port") and returns the reflexive transport address's IP from
// the XOR-MAPPED-ADDRESS attribute (or MAPPED-ADDRESS from RFC 3489 servers).
// Requests are retransmitted; the call takes at most about 3 s or until ctx
// ends. Errors: resolution or socket failures, no answer, a malformed or
// error response.
func STUNAddress(ctx context.Context, server string) (netip.Addr, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp4", server)
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()

	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.Addr{}, err
	}
	buf := make([]byte, 1500)
	for _, rto := range stunRTO {
		if _, err := c.Write(req.Raw); err != nil {
			return netip.Addr{}, err
		}
		deadline := time.Now().Add(rto)
		for {
			c.SetReadDeadline(deadline)
			n, err := c.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					return netip.Addr{}, ctx.Err()
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit
				}
				if errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) {
					return netip.Addr{}, err // closed, or ICMP port unreachable: nobody there
				}
				continue // other transient errors: keep listening until the deadline
			}
			a, ok, err := parseBindingResponse(buf[:n], req.TransactionID)
			if err != nil {
				return netip.Addr{}, err
			}
			if ok {
				return a, nil
			}
		}
	}
	return netip.Addr{}, errors.New("no answer")
}

// parseBindingResponse decodes one datagram; ok is false for datagrams that
// are not the answer to transaction id (ignored).
func parseBindingResponse(b []byte, id [stun.TransactionIDSize]byte) (netip.Addr, bool, error) {
	if !stun.IsMessage(b) {
		return netip.Addr{}, false, nil
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil || m.TransactionID != id {
		return netip.Addr{}, false, nil
	}
	if m.Type.Method != stun.MethodBinding {
		return netip.Addr{}, false, nil
	}
	if m.Type.Class == stun.ClassErrorResponse {
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(m); err == nil {
			return netip.Addr{}, false, fmt.Errorf("error response %d %s", code.Code, code.Reason)
		}
		return netip.Addr{}, false, errors.New("error response")
	}
	if m.Type.Class != stun.ClassSuccessResponse {
		return netip.Addr{}, false, nil
	}
	var ip net.IP
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(m); err == nil {
		ip = xor.IP
	} else {
		var mapped stun.MappedAddress
		if err := mapped.GetFrom(m); err != nil {
			return netip.Addr{}, false, errors.New("response without a mapped address")
		}
		ip = mapped.IP
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok || !a.Unmap().IsValid() || a.IsUnspecified() {
		return netip.Addr{}, false, errors.New("response with an invalid mapped address")
	}
	return a.Unmap(), true, nil
}
