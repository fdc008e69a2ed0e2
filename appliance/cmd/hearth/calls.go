package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/extdisco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/proxy65"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/turn"
)

// callsSetup is `hearth serve`'s calls and file transfer part (issue 4):
// the STUN/TURN server, its announcement over XEP-0215 and the XEP-0065
// SOCKS5 bytestreams proxy. --turn-port (serveConfig.turnPort) is the
// STUN/TURN port.
type callsSetup struct {
	turnsPort             int
	turnHost, relayIP     string
	relayPorts            string
	maxAllocsPerUser      int
	proxyPort             int
	proxyDomain, proxyHst string
}

// register adds the flags to fs.
func (c *callsSetup) register(fs *flag.FlagSet) {
	fs.IntVar(&c.turnsPort, "turns-port", turn.DefaultTLSPort, "STUN/TURN over TLS port (turns:); 0 disables")
	fs.StringVar(&c.turnHost, "turn-host", "", "host name clients use for STUN/TURN, announced over XEP-0215; default: the domain")
	fs.StringVar(&c.relayIP, "turn-relay-ip", "", "public IPv4 address of TURN relays; default: the --listen address, or this machine's LAN address when listening on 0.0.0.0")
	fs.StringVar(&c.relayPorts, "turn-relay-ports", fmt.Sprintf("%d-%d", turn.DefaultRelayMinPort, turn.DefaultRelayMaxPort), "UDP port range of TURN relays (forward it on the router with --turn-port)")
	fs.IntVar(&c.maxAllocsPerUser, "turn-max-allocations-per-user", turn.DefaultMaxAllocationsPerUser, "live TURN relay allocations one user may hold (a call takes 1-2 per device); more are refused with 486; 0: no limit")
	fs.IntVar(&c.proxyPort, "proxy65-port", proxy65.DefaultPort, "SOCKS5 file transfer proxy port (XEP-0065); 0 disables")
	fs.StringVar(&c.proxyDomain, "proxy65-domain", "", "JID of the file transfer proxy; default proxy.DOMAIN")
	fs.StringVar(&c.proxyHst, "proxy65-host", "", "host name or address clients connect to for the file transfer proxy; default: the --listen address, or the domain when listening on 0.0.0.0")
}

// registerCalls starts the TURN server, registers XEP-0215 and the
// XEP-0065 proxy, and adds a job to cfg.jobs that stops them at shutdown.
// A port that cannot be bound (another TURN server, a second instance) is
// logged and leaves that service out: chat works without them. It fails
// only on bad flags or a store error.
func registerCalls(srv *server.Server, cfg *serveConfig) error {
	c := &cfg.calls
	log := srv.Logger()
	var closers []func() error
	if cfg.turnPort != 0 {
		secret, err := turn.LoadOrCreateSecret(context.Background(), srv.Store())
		if err != nil {
			return err
		}
		tc := turn.Config{Realm: cfg.domain, Secret: secret, Port: cfg.turnPort, Logger: log,
			MaxAllocationsPerUser: c.maxAllocsPerUser}
		if c.maxAllocsPerUser <= 0 {
			tc.MaxAllocationsPerUser = -1 // no quota
		}
		for _, h := range strings.Split(cfg.listen, ",") {
			tc.ListenAddrs = append(tc.ListenAddrs, strings.TrimSpace(h))
		}
		lo, hi, ok := strings.Cut(c.relayPorts, "-")
		if tc.RelayMinPort, err = strconv.Atoi(lo); err == nil && ok {
			tc.RelayMaxPort, err = strconv.Atoi(hi)
		}
		if err != nil || !ok {
			return fmt.Errorf("bad --turn-relay-ports %q: want MIN-MAX", c.relayPorts)
		}
		if tc.RelayIP, err = relayIP(c.relayIP, tc.ListenAddrs); err != nil {
			return err
		}
		tlsPort := c.turnsPort
		if tlsPort != 0 {
			// The certificate is chosen at each handshake: ACME renewals apply.
			tc.TLS, tc.TLSPort = &tls.Config{GetCertificate: cfg.acme.serveCertificate}, tlsPort
		}
		ts, err := turn.Start(tc)
		if isListenError(err) && tc.TLS != nil {
			log.Error("STUN/TURN over TLS not started", "err", err)
			tc.TLS, tlsPort = nil, 0
			ts, err = turn.Start(tc)
		}
		if err != nil && !isListenError(err) {
			return err
		}
		if err != nil {
			log.Error("STUN/TURN server not started: calls between networks may fail (XEP-0215 still announces it, for a TURN server sharing the secret)", "err", err)
		} else {
			closers = append(closers, ts.Close)
		}
		if err := extdisco.Register(srv, extdisco.Config{Host: c.turnHost, Port: cfg.turnPort, TLSPort: tlsPort, Secret: secret}); err != nil {
			return err
		}
	}
	if c.proxyPort != 0 {
		pc := proxy65.Config{Domain: c.proxyDomain, Port: c.proxyPort, Host: c.proxyHst}
		for _, h := range strings.Split(cfg.listen, ",") {
			pc.ListenAddrs = append(pc.ListenAddrs, strings.TrimSpace(h))
		}
		p, err := proxy65.Register(srv, pc)
		if err != nil && !isListenError(err) {
			return err
		}
		if err != nil {
			log.Error("file transfer proxy (XEP-0065) not started", "err", err)
		} else {
			closers = append(closers, p.Close)
		}
	}
	cfg.jobs = append(cfg.jobs, func(ctx context.Context) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			<-ctx.Done()
			for _, f := range closers {
				f()
			}
		}()
		return done
	})
	return nil
}

// relayIP parses --turn-relay-ip. Empty leaves it to package turn (the
// first specific IPv4 listen address) unless the listen addresses are
// wildcards: then this machine's first non-loopback IPv4 address, good on
// the home network until --turn-relay-ip names the public one.
func relayIP(flagValue string, listen []string) (net.IP, error) {
	if flagValue != "" {
		ip := net.ParseIP(flagValue)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("bad --turn-relay-ip %q: want an IPv4 address", flagValue)
		}
		return ip, nil
	}
	for _, a := range listen {
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() && !ip.IsUnspecified() {
			return nil, nil
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("finding a TURN relay address: %w (set --turn-relay-ip)", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("no IPv4 address for TURN relays: set --turn-relay-ip")
}

// isListenError reports whether err is a failure to bind a socket (the
// port is taken), as opposed to a configuration error.
func isListenError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}
