// Package portmap asks the home router to forward Hearth's ports: UPnP IGD
// (WANIPConnection:2, WANIPConnection:1, WANPPPConnection:1; UPnP Forum IGD
// specifications) through github.com/huin/goupnp, or NAT-PMP (RFC 6886)
// through github.com/jackpal/go-nat-pmp. A Manager keeps a set of mappings
// alive, renews them before their lease ends and removes them on shutdown.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/huin/goupnp/dcps/internetgateway2"
	"github.com/jackpal/gateway"
	natpmp "github.com/jackpal/go-nat-pmp"
)

// Mapping is one port forwarding asked of the router.
type Mapping struct {
	// Protocol is "tcp" or "udp".
	Protocol string
	// InternalPort is the port Hearth listens on, on the LAN address.
	InternalPort uint16
	// ExternalPort is the port requested on the router's public side; 0
	// means the same as InternalPort.
	ExternalPort uint16
	// Description is shown in the router's table (UPnP only), e.g.
	// "Hearth XMPP c2s".
	Description string
}

func (m Mapping) external() uint16 {
	if m.ExternalPort == 0 {
		return m.InternalPort
	}
	return m.ExternalPort
}

// String is "tcp 5222" or "udp 3478->3479" when the ports differ.
func (m Mapping) String() string {
	if m.external() == m.InternalPort {
		return fmt.Sprintf("%s %d", m.Protocol, m.InternalPort)
	}
	return fmt.Sprintf("%s %d->%d", m.Protocol, m.external(), m.InternalPort)
}

// Router is a router that maps ports on request.
type Router interface {
	// Protocol names the mapping protocol: "UPnP IGD" or "NAT-PMP".
	Protocol() string
	// LocalAddr is Hearth's own LAN address as the router sees it, the
	// target of every mapping.
	LocalAddr() netip.Addr
	// ExternalIP is the router's WAN address as the router reports it (a
	// private or 100.64.0.0/10 address means another NAT in front).
	ExternalIP(ctx context.Context) (netip.Addr, error)
	// Add asks for m for lease (rounded to seconds; routers may shorten it)
	// and returns the external port granted.
	Add(ctx context.Context, m Mapping, lease time.Duration) (uint16, error)
	// Delete removes the mapping of m's protocol and external port granted.
	Delete(ctx context.Context, m Mapping, external uint16) error
}

// ErrNoRouter means no router answered the discovery.
var ErrNoRouter = errors.New("portmap: no UPnP IGD or NAT-PMP router found")

// Discover finds a router: method "upnp", "natpmp" or "auto" (UPnP first,
// then NAT-PMP on the default gateway). It returns ErrNoRouter when none
// answers before ctx ends or the protocol's own timeout.
func Discover(ctx context.Context, method string) (Router, error) {
	switch method {
	case "upnp":
		return DiscoverUPnP(ctx)
	case "natpmp":
		return DiscoverNATPMP(ctx, netip.Addr{})
	case "auto":
		r, err := DiscoverUPnP(ctx)
		if err == nil {
			return r, nil
		}
		if r, err2 := DiscoverNATPMP(ctx, netip.Addr{}); err2 == nil {
			return r, nil
		}
		return nil, err
	}
	return nil, fmt.Errorf("portmap: unknown method %q (want upnp, natpmp or auto)", method)
}

// igdClient is the part common to the WANIPConnection and WANPPPConnection
// service clients of goupnp.
type igdClient interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string, internalPort uint16, internalClient string, enabled bool, description string, leaseDuration uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	LocalAddr() net.IP
}

type upnpRouter struct {
	c     igdClient
	local netip.Addr
}

// DiscoverUPnP searches the LAN with SSDP for an Internet Gateway Device
// (WANIPConnection:2, then :1, then WANPPPConnection:1) and returns the
// first that answers, or ErrNoRouter.
func DiscoverUPnP(ctx context.Context) (Router, error) {
	var found []igdClient
	if cs, _, err := internetgateway2.NewWANIPConnection2ClientsCtx(ctx); err == nil {
		for _, c := range cs {
			found = append(found, c)
		}
	}
	if len(found) == 0 {
		if cs, _, err := internetgateway2.NewWANIPConnection1ClientsCtx(ctx); err == nil {
			for _, c := range cs {
				found = append(found, c)
			}
		}
	}
	if len(found) == 0 {
		if cs, _, err := internetgateway2.NewWANPPPConnection1ClientsCtx(ctx); err == nil {
			for _, c := range cs {
				found = append(found, c)
			}
		}
	}
	for _, c := range found {
		if a, ok := netip.AddrFromSlice(c.LocalAddr()); ok {
			return &upnpRouter{c: c, local: a.Unmap()}, nil
		}
	}
	return nil, ErrNoRouter
}

func (r *upnpRouter) Protocol() string      { return "UPnP IGD" }
func (r *upnpRouter) LocalAddr() netip.Addr { return r.local }

func (r *upnpRouter) ExternalIP(ctx context.Context) (netip.Addr, error) {
	s, err := r.c.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.ParseAddr(s)
}

func (r *upnpRouter) Add(ctx context.Context, m Mapping, lease time.Duration) (uint16, error) {
	ext := m.external()
	err := r.c.AddPortMappingCtx(ctx, "", ext, upnpProto(m.Protocol), m.InternalPort, r.local.String(), true, m.Description, uint32(lease/time.Second))
	if err != nil && lease > 0 {
		// IGDv1 routers may only accept permanent leases (error 725,
		// OnlyPermanentLeasesSupported); the Manager deletes them on Stop.
		if err2 := r.c.AddPortMappingCtx(ctx, "", ext, upnpProto(m.Protocol), m.InternalPort, r.local.String(), true, m.Description, 0); err2 == nil {
			return ext, nil
		}
	}
	return ext, err
}

func (r *upnpRouter) Delete(ctx context.Context, m Mapping, external uint16) error {
	return r.c.DeletePortMappingCtx(ctx, "", external, upnpProto(m.Protocol))
}

func upnpProto(p string) string {
	if p == "udp" {
		return "UDP"
	}
	return "TCP"
}

type natpmpRouter struct {
	c     *natpmp.Client
	local netip.Addr
}

// DiscoverNATPMP asks the gateway (the default route's when gw is the zero
// Addr) for its external address over NAT-PMP (RFC 6886 §3.2); a gateway
// that does not answer within a few seconds gives ErrNoRouter.
func DiscoverNATPMP(ctx context.Context, gw netip.Addr) (Router, error) {
	if !gw.IsValid() {
		ip, err := gateway.DiscoverGateway()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoRouter, err)
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return nil, ErrNoRouter
		}
		gw = a.Unmap()
	}
	timeout := 3 * time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	c := natpmp.NewClientWithTimeout(gw.AsSlice(), timeout)
	if _, err := c.GetExternalAddress(); err != nil {
		return nil, fmt.Errorf("%w: NAT-PMP at %s: %v", ErrNoRouter, gw, err)
	}
	// The LAN address is the one the kernel picks towards the gateway.
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, 5351)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return &natpmpRouter{c: c, local: local}, nil
}

func (r *natpmpRouter) Protocol() string      { return "NAT-PMP" }
func (r *natpmpRouter) LocalAddr() netip.Addr { return r.local }

func (r *natpmpRouter) ExternalIP(context.Context) (netip.Addr, error) {
	res, err := r.c.GetExternalAddress()
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.AddrFrom4(res.ExternalIPAddress), nil
}

func (r *natpmpRouter) Add(_ context.Context, m Mapping, lease time.Duration) (uint16, error) {
	secs := int(lease / time.Second)
	if secs <= 0 {
		secs = 7200 // RFC 6886 §3.3 recommends 7200 s
	}
	res, err := r.c.AddPortMapping(m.Protocol, int(m.InternalPort), int(m.external()), secs)
	if err != nil {
		return 0, err
	}
	return res.MappedExternalPort, nil
}

func (r *natpmpRouter) Delete(_ context.Context, m Mapping, _ uint16) error {
	// RFC 6886 §3.4: a request with lifetime 0 (and external port 0)
	// deletes the mapping of that internal port.
	_, err := r.c.AddPortMapping(m.Protocol, int(m.InternalPort), 0, 0)
	return err
}
