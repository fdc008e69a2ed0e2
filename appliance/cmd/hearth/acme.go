package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hearthxmpp/hearth/appliance/certs"
	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/ddns"
)

// Environment variables (or KEY=VALUE lines of --dns-credentials) holding the
// DNS provider's settings; secrets never go in flags, which ps shows.
const (
	envCloudflareToken = "HEARTH_CLOUDFLARE_TOKEN"
	envRFC2136Server   = "HEARTH_RFC2136_SERVER"
	envRFC2136KeyName  = "HEARTH_RFC2136_KEY_NAME"
	envRFC2136KeyAlg   = "HEARTH_RFC2136_KEY_ALG"
	envRFC2136Secret   = "HEARTH_RFC2136_SECRET"
)

// acmeSetup is `hearth serve`'s ACME and dynamic DNS part (issue 6): its
// flags, and once set up the certificate manager and the DNS updater.
type acmeSetup struct {
	acme                 bool
	ca, caRoot, email    string
	challenge            string
	dnsProvider, dnsZone string
	dnsCredentials       string
	ddns                 bool
	stunServers          string
	fallback             *tls.Certificate
	mgr                  atomic.Pointer[certs.Manager]
	updater              *ddns.Updater
	provider             ddns.Provider
	providerName         string
	// siteToken is the Cloudflare API token of the setup wizard's stored
	// domain choice (site.go), used when --dns-provider came from it.
	siteToken string
}

// register adds the flags to fs.
func (a *acmeSetup) register(fs *flag.FlagSet) {
	fs.BoolVar(&a.acme, "acme", false, "obtain and renew the certificate from an ACME CA (Let's Encrypt); off: self-signed")
	fs.StringVar(&a.ca, "acme-ca", "letsencrypt", "ACME directory URL, or letsencrypt / letsencrypt-staging")
	fs.StringVar(&a.caRoot, "acme-ca-root", "", "PEM file of roots to trust for the ACME CA's HTTPS API (a private CA); default: the system's")
	fs.StringVar(&a.email, "acme-email", "", "contact address for the ACME account (expiry warnings)")
	fs.StringVar(&a.challenge, "acme-challenge", certs.ChallengeHTTP01, "ACME challenge: http-01 (needs port 80 reachable: --http-port) or dns-01 (needs --dns-provider)")
	fs.StringVar(&a.dnsProvider, "dns-provider", "", "DNS service for dynamic DNS and dns-01: cloudflare ("+envCloudflareToken+") or rfc2136 ("+envRFC2136Server+", "+envRFC2136KeyName+", "+envRFC2136KeyAlg+", "+envRFC2136Secret+")")
	fs.StringVar(&a.dnsZone, "dns-zone", "", "DNS zone holding the domain; default: the domain itself")
	fs.StringVar(&a.dnsCredentials, "dns-credentials", "", "file of KEY=VALUE lines with the DNS provider settings (the environment variables override it)")
	fs.BoolVar(&a.ddns, "ddns", false, "keep A/AAAA, the XMPP SRV records and the component names current at --dns-provider")
	fs.StringVar(&a.stunServers, "stun-servers", strings.Join(ddns.DefaultSTUNServers, ","), "comma-separated STUN servers (host:port) that tell the public IPv4 address (--ddns)")
}

// getCertificate is the c2s server's Config.GetCertificate: nil without
// --acme (the server then uses the fixed certificate), else the ACME
// certificate once there is one, fallback until then.
func (a *acmeSetup) getCertificate(fallback *tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	a.fallback = fallback
	if !a.acme {
		return nil
	}
	return a.serveCertificate
}

func (a *acmeSetup) serveCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m := a.mgr.Load(); m != nil {
		return m.GetCertificate(hello)
	}
	return a.fallback, nil
}

// httpsConfig is the HTTPS listener's TLS configuration: the same
// certificate as c2s, chosen at each handshake.
func (a *acmeSetup) httpsConfig(fallback *tls.Certificate) *tls.Config {
	a.fallback = fallback
	return &tls.Config{GetCertificate: a.serveCertificate}
}

// setup builds the DNS provider, the certificate manager (registering the
// HTTP-01 handler on web) and the DNS updater from the flags; it runs after
// the modules registered their components (whose domains join the
// certificate and the DNS records) and before the listeners start.
func (a *acmeSetup) setup(cfg *serveConfig, srv *server.Server, web *httpd.Server, st *store.Store, log *slog.Logger) error {
	if !a.acme && !a.ddns {
		return nil
	}
	if a.dnsProvider != "" {
		p, err := a.newProvider()
		if err != nil {
			return err
		}
		a.provider, a.providerName = p, a.dnsProvider
	}
	names := append([]string{cfg.domain}, srv.Components()...)
	if a.acme {
		mc := certs.Config{
			Names: names, DataDir: cfg.data, Email: a.email, Challenge: a.challenge,
			Fallback: a.fallback, Logger: log.With("part", "acme"),
		}
		switch a.ca {
		case "", "letsencrypt":
			mc.CA = certs.LetsEncrypt
		case "letsencrypt-staging":
			mc.CA = certs.LetsEncryptStaging
		default:
			mc.CA = a.ca
		}
		if a.caRoot != "" {
			b, err := os.ReadFile(a.caRoot)
			if err != nil {
				return fmt.Errorf("--acme-ca-root: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				return fmt.Errorf("--acme-ca-root: no PEM certificate in %s", a.caRoot)
			}
			mc.CARoots = pool
		}
		switch a.challenge {
		case certs.ChallengeDNS01:
			if a.provider == nil {
				return errors.New("--acme-challenge dns-01 needs --dns-provider")
			}
			mc.DNSProvider = a.provider
		case certs.ChallengeHTTP01:
			if cfg.httpPort == 0 {
				return errors.New("--acme-challenge http-01 needs the plain HTTP listener (--http-port, port 80 as seen from the internet)")
			}
			host := strings.TrimSpace(strings.Split(cfg.listen, ",")[0])
			mc.HTTPListen = net.JoinHostPort(host, strconv.Itoa(cfg.httpPort))
		}
		m, err := certs.New(mc)
		if err != nil {
			return err
		}
		if a.challenge == certs.ChallengeHTTP01 {
			web.Handle("/.well-known/acme-challenge/", m.HTTPHandler())
		}
		a.mgr.Store(m)
	}
	if a.ddns {
		if a.provider == nil {
			return errors.New("--ddns needs --dns-provider")
		}
		var stun []string
		for _, s := range strings.Split(a.stunServers, ",") {
			if s = strings.TrimSpace(s); s != "" {
				stun = append(stun, s)
			}
		}
		d := &ddns.Discoverer{STUNServers: stun, Logger: log}
		if pm := cfg.portmap; pm != nil {
			// Cross-check STUN with the router's own idea of its WAN address.
			d.RouterAddress = func(context.Context) (netip.Addr, error) { return pm.Status().ExternalIP, nil }
		}
		u, err := ddns.New(ddns.Config{
			Domain: cfg.domain, Zone: a.dnsZone, Provider: a.provider, ProviderName: a.providerName,
			Components: srv.Components(),
			C2SPort:    port16(cfg.c2sPort), C2STLSPort: port16(cfg.c2sTLSPort), S2SPort: port16(cfg.s2sPort),
			Discover: d.Discover, Store: st, Logger: log.With("part", "ddns"),
		})
		if err != nil {
			return err
		}
		a.updater = u
	}
	return nil
}

func port16(p int) uint16 {
	if p <= 0 || p > 65535 {
		return 0
	}
	return uint16(p)
}

// start runs the certificate manager and the DNS updater until ctx ends;
// call it once the listeners are up (HTTP-01 is answered by the plain HTTP
// listener). The returned func waits for them to stop.
func (a *acmeSetup) start(ctx context.Context) (wait func()) {
	var done []chan struct{}
	if m := a.mgr.Load(); m != nil {
		ch := make(chan struct{})
		done = append(done, ch)
		go func() { defer close(ch); m.Run(ctx); m.Close() }()
	}
	if a.updater != nil {
		ch := make(chan struct{})
		done = append(done, ch)
		go func() { defer close(ch); a.updater.Run(ctx) }()
	}
	return func() {
		for _, ch := range done {
			<-ch
		}
	}
}

// newProvider builds the --dns-provider from the environment and
// --dns-credentials.
func (a *acmeSetup) newProvider() (ddns.Provider, error) {
	vals := map[string]string{}
	if a.dnsCredentials != "" {
		f, err := os.Open(a.dnsCredentials)
		if err != nil {
			return nil, fmt.Errorf("--dns-credentials: %w", err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				f.Close()
				return nil, fmt.Errorf("--dns-credentials: a line is not KEY=VALUE")
			}
			vals[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--dns-credentials: %w", err)
		}
	}
	get := func(k string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return vals[k]
	}
	switch a.dnsProvider {
	case "cloudflare":
		if a.siteToken != "" {
			return ddns.NewCloudflare(a.siteToken)
		}
		if get(envCloudflareToken) == "" {
			return nil, fmt.Errorf("--dns-provider cloudflare needs %s (environment or --dns-credentials)", envCloudflareToken)
		}
		return ddns.NewCloudflare(get(envCloudflareToken))
	case "rfc2136":
		return ddns.NewRFC2136(get(envRFC2136Server), get(envRFC2136KeyName), get(envRFC2136KeyAlg), get(envRFC2136Secret))
	default:
		return nil, fmt.Errorf("unknown --dns-provider %q: cloudflare or rfc2136", a.dnsProvider)
	}
}
