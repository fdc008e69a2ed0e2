package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/certs"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/ddns"
	"github.com/hearthxmpp/hearth/webui"
)

// Settings keys of the setup wizard's domain choice (webui.SiteChoice).
// `hearth serve` applies them at start to the flags not given on the
// command line.
const (
	settingSiteDomain = "site.domain"
	// settingSiteDNS is "manual" or "cloudflare".
	settingSiteDNS  = "site.dns"
	settingSiteZone = "site.dns_zone"
	// settingSiteCredentials is the Cloudflare API token: a secret, never
	// logged; it stays in the data directory.
	settingSiteCredentials = "site.dns_credentials"
	// settingSiteACME is "on" when a certificate is wanted.
	settingSiteACME      = "site.acme"
	settingSiteACMEEmail = "site.acme_email"
)

// loadSite reads the stored domain choice; DNS is "" when none was made.
func loadSite(ctx context.Context, st *store.Store) (webui.SiteChoice, error) {
	var c webui.SiteChoice
	for key, dst := range map[string]*string{
		settingSiteDomain: &c.Domain, settingSiteDNS: &c.DNS, settingSiteZone: &c.Zone,
		settingSiteCredentials: &c.Token, settingSiteACMEEmail: &c.ACMEEmail,
	} {
		v, err := st.Setting(ctx, key)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return c, err
		}
		*dst = v
	}
	acme, err := st.Setting(ctx, settingSiteACME)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return c, err
	}
	c.ACME = acme == "on"
	return c, nil
}

// saveSite stores c in one transaction (empty fields delete their keys).
func saveSite(ctx context.Context, st *store.Store, c webui.SiteChoice) error {
	acme := ""
	if c.ACME {
		acme = "on"
	}
	return st.SetSettings(ctx, map[string]string{
		settingSiteDomain: c.Domain, settingSiteDNS: c.DNS, settingSiteZone: c.Zone,
		settingSiteCredentials: c.Token, settingSiteACME: acme, settingSiteACMEEmail: c.ACMEEmail,
	})
}

// explicitFlags are the names of the flags fs.Parse saw on the command line.
func explicitFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// applySiteChoice applies the stored choice s to cfg for every flag that
// was not given explicitly (explicit flags win): Cloudflare turns on
// --dns-provider cloudflare with the stored token, --dns-zone, --ddns,
// --acme with --acme-challenge dns-01; manual DNS with a certificate turns
// on --acme with --acme-challenge http-01; --acme-email in both cases. It
// returns the flags it set, for the log (never the token).
func applySiteChoice(cfg *serveConfig, explicit map[string]bool, s webui.SiteChoice) []string {
	var applied []string
	set := func(name string, f func()) {
		if !explicit[name] {
			f()
			applied = append(applied, name)
		}
	}
	switch s.DNS {
	case webui.DNSCloudflare:
		if !explicit["dns-provider"] && !explicit["dns-credentials"] {
			cfg.acme.dnsProvider, cfg.acme.siteToken = "cloudflare", s.Token
			applied = append(applied, "dns-provider")
			if s.Zone != "" {
				set("dns-zone", func() { cfg.acme.dnsZone = s.Zone })
			}
		}
		if cfg.acme.dnsProvider == "" {
			// --dns-credentials without --dns-provider: no provider to keep
			// the records or answer DNS-01 with (acme.setup would refuse).
			return applied
		}
		set("ddns", func() { cfg.acme.ddns = true })
		set("acme", func() { cfg.acme.acme = true })
		set("acme-challenge", func() { cfg.acme.challenge = certs.ChallengeDNS01 })
	case webui.DNSManual:
		if s.ACME && cfg.httpPort != 0 {
			set("acme", func() { cfg.acme.acme = true })
			set("acme-challenge", func() { cfg.acme.challenge = certs.ChallengeHTTP01 })
		}
	default:
		return nil
	}
	if s.ACMEEmail != "" && (s.ACME || s.DNS == webui.DNSCloudflare) {
		set("acme-email", func() { cfg.acme.email = s.ACMEEmail })
	}
	return applied
}

// serveDomain is the domain a run serves: the one the data directory
// belongs to (store.SettingDomain, recorded at the first start). The
// --domain flag must name it, or a domain the setup wizard renamed away
// from (store.PreviousDomains: the image always starts with --domain
// hearth.local), which serves the renamed one with an info log. Any other
// mismatch is an error.
func serveDomain(ctx context.Context, st *store.Store, flagDomain string, log *slog.Logger) (string, error) {
	stored, err := st.Setting(ctx, store.SettingDomain)
	if errors.Is(err, store.ErrNotFound) || err == nil && stored == flagDomain {
		return flagDomain, checkDomain(ctx, st, flagDomain)
	}
	if err != nil {
		return "", err
	}
	prev, err := st.PreviousDomains(ctx)
	if err != nil {
		return "", err
	}
	if slices.Contains(prev, flagDomain) {
		log.Info("the setup wizard renamed this data directory's domain: serving it instead of --domain", "domain", stored, "flag", flagDomain)
		return stored, nil
	}
	return "", checkDomain(ctx, st, flagDomain)
}

// applySite is webui.Config.ApplySite: it renames the data directory's
// domain when the choice changes it (store.RenameDomain, only while the
// data is fresh), saves the choice, and asks the serve loop to restart
// shortly after (the HTTP answer is written first; the web server's
// shutdown is graceful).
func (c *serveConfig) applySite(ctx context.Context, s webui.SiteChoice) error {
	if s.DNS == webui.DNSCloudflare && s.Token == "" {
		return errors.New("no Cloudflare API token")
	}
	// A choice the next start could not apply would stop every start.
	if s.DNS == webui.DNSManual && s.ACME && c.httpPort == 0 && !c.explicit["acme"] {
		return &webui.SettingError{Flag: "http-port", Text: "Hearth runs without a plain HTTP port (--http-port 0), so Let's Encrypt cannot check the domain over HTTP: choose Cloudflare, or no certificate."}
	}
	// A second submission before the restart finds the rename done.
	if cur, err := c.store.Setting(ctx, store.SettingDomain); err == nil && cur != s.Domain {
		if err := c.store.RenameDomain(ctx, cur, s.Domain); err != nil {
			return err
		}
	}
	if err := saveSite(ctx, c.store, s); err != nil {
		return err
	}
	c.log.Info("the domain choice was saved: restarting the services", "domain", s.Domain, "dns", s.DNS, "acme", s.ACME)
	if c.restart != nil {
		time.AfterFunc(restartDelay, c.restart)
	}
	return nil
}

// restartDelay lets the answer to the saving request go out before the
// services stop.
const restartDelay = 300 * time.Millisecond

// siteStatus is webui.Config.DomainStatus: the dynamic DNS updater's
// status when Hearth keeps the records (Cloudflare, --ddns), else the live
// DNS check once a domain choice was made, else what to do.
func (c *serveConfig) siteStatus(ctx context.Context) webui.StepStatus {
	if c.acme.updater != nil || c.site.DNS == "" {
		return c.domainStatus(ctx)
	}
	return webui.DNSCheckStatus(c.checkDNS(ctx))
}

// checkDNS is webui.Config.CheckDNS: ddns.CheckRecords for the served
// domain, its components and ports, against the public addresses
// (the updater's, else a STUN discovery cached for publicAddrTTL), through
// --dns-resolver or the system resolver.
func (c *serveConfig) checkDNS(ctx context.Context) []ddns.RecordCheck {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cc := ddns.CheckConfig{
		Domain:  c.domain,
		C2SPort: port16(c.c2sPort), C2STLSPort: port16(c.c2sTLSPort), S2SPort: port16(c.s2sPort),
		Resolver: ddns.ResolverAt(c.dnsResolver), Timeout: 3 * time.Second,
	}
	if c.srv != nil {
		cc.Components = c.srv.Components()
	}
	a := c.publicAddresses(ctx)
	cc.IPv4, cc.IPv6 = a.IPv4, a.IPv6
	return ddns.CheckRecords(ctx, cc)
}

// publicAddrTTL is how long a discovered public address is reused by the
// DNS check.
const publicAddrTTL = 5 * time.Minute

// addrCache remembers the last discovery of the public addresses.
type addrCache struct {
	mu   sync.Mutex
	at   time.Time
	addr ddns.Addresses
}

// publicAddresses are the public IPv4 (STUN) and global IPv6 addresses:
// the updater's last discovery, else a discovery of our own (cached).
func (c *serveConfig) publicAddresses(ctx context.Context) ddns.Addresses {
	if u := c.acme.updater; u != nil {
		return u.Status().Addresses
	}
	c.addrs.mu.Lock()
	defer c.addrs.mu.Unlock()
	if !c.addrs.at.IsZero() && time.Since(c.addrs.at) < publicAddrTTL {
		return c.addrs.addr
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := &ddns.Discoverer{STUNServers: splitList(c.acme.stunServers), Logger: c.log}
	a, err := d.Discover(dctx)
	if err != nil {
		c.log.Debug("public address discovery for the DNS check failed", "err", err)
	}
	c.addrs.at, c.addrs.addr = time.Now(), a
	return a
}

// siteChoiceInForce is the choice the web pages start from: the stored one
// with the domain served now.
func siteChoiceInForce(s webui.SiteChoice, domain string) webui.SiteChoice {
	if s.DNS != "" {
		s.Domain = domain
	}
	return s
}
