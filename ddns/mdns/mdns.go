// Package mdns announces Hearth on the home network with multicast DNS
// (RFC 6762) and DNS-SD (RFC 6763), through github.com/brutella/dnssd: the
// host name (hearth.local, so the setup wizard opens at http://hearth.local
// without knowing the Pi's address), the XMPP client service
// _xmpp-client._tcp and the web service _http._tcp.
package mdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/brutella/dnssd"
)

// Config says what to announce.
type Config struct {
	// Host is the host label announced as Host.local, e.g. "hearth".
	Host string
	// Domain is the XMPP domain, put in the TXT record of the XMPP service.
	Domain string
	// C2SPort is the XMPP client port (5222); 0 leaves the service out.
	C2SPort int
	// HTTPPort is the web port of the wizard (80); 0 leaves it out.
	HTTPPort int
	// Ifaces limits the announcement to these interfaces; empty means all
	// multicast-capable ones.
	Ifaces []string
	// Logger receives the announcement; nil means slog.Default().
	Logger *slog.Logger
}

// Advertise announces the services until ctx ends; it returns nil then, or
// the responder's error (no multicast-capable interface, socket errors). If
// another host already uses the name, DNS-SD probing picks "Host-2" (RFC
// 6762 §9) and the log says so.
func Advertise(ctx context.Context, cfg Config) error {
	if cfg.Host == "" {
		return errors.New("mdns: no host name")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	rp, err := dnssd.NewResponder()
	if err != nil {
		return fmt.Errorf("mdns: %w", err)
	}
	add := func(name, typ string, port int, txt map[string]string) error {
		if port <= 0 {
			return nil
		}
		sv, err := dnssd.NewService(dnssd.Config{
			Name: name, Type: typ, Host: cfg.Host, Port: port, Text: txt, Ifaces: cfg.Ifaces,
		})
		if err != nil {
			return fmt.Errorf("mdns: %s: %w", typ, err)
		}
		if _, err := rp.Add(sv); err != nil {
			return fmt.Errorf("mdns: %s: %w", typ, err)
		}
		return nil
	}
	if err := add("Hearth XMPP", "_xmpp-client._tcp", cfg.C2SPort, map[string]string{"domain": cfg.Domain}); err != nil {
		return err
	}
	if err := add("Hearth", "_http._tcp", cfg.HTTPPort, map[string]string{"path": "/"}); err != nil {
		return err
	}
	log.Info("announcing on the LAN with mDNS", "host", cfg.Host+".local")
	err = rp.Respond(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
