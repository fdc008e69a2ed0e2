package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/webclient"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/register"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/ddns/reach"
	"github.com/hearthxmpp/hearth/webui"
)

// uiSetup is `hearth serve`'s part for invitations and the web pages
// (issue 5): in-band registration with invitation tokens, the setup
// wizard, the invitation landing pages and the admin pages.
type uiSetup struct {
	inviteURL string
	setupCode string
	// deletionGrace is how long a deleted account stays locked (and can be
	// restored) before it is gone.
	deletionGrace time.Duration
	// ui and invites are the web pages and the invitation service setup
	// made: the control socket's commands call them (control.go).
	ui      *webui.UI
	invites *invite.Service
	// baseURL is the public origin of invitation links (--invite-url or
	// its default).
	baseURL string
}

// envSetupCode holds the setup code when it should not show in ps.
const envSetupCode = "HEARTH_SETUP_CODE"

// register adds the flags to fs.
func (u *uiSetup) register(fs *flag.FlagSet) {
	fs.StringVar(&u.inviteURL, "invite-url", "", "public HTTPS origin of invitation links (default https://DOMAIN, with :PORT unless --https-port is 443)")
	fs.DurationVar(&u.deletionGrace, "account-deletion-grace", 7*24*time.Hour, "how long an account deleted on the web pages stays locked, and can be restored, before it and its data are gone; 0 deletes at once")
	fs.StringVar(&u.setupCode, "setup-code", "", "code the setup wizard asks for before creating the first administrator (printed when the image is built; also "+envSetupCode+"); empty: none")
}

// setup installs XMPP registration with invitations (XEP-0445, XEP-0401)
// on srv and the web pages on web.
func (u *uiSetup) setup(srv *server.Server, web *httpd.Server, cfg *serveConfig, log *slog.Logger) {
	var ui *webui.UI
	invites := invite.New(invite.Config{Store: srv.Store(), Domain: cfg.domain, Roster: srv, Logger: log,
		GroupChat: cfg.groupChat,
		// The welcome message goes to every new account.
		Registered: func(ctx context.Context, user string) { ui.Welcome(ctx, user) }})
	register.EnableInBand(srv, invites)
	base := u.inviteURL
	if base == "" {
		base = "https://" + cfg.domain
		if cfg.httpsPort != 443 && cfg.httpsPort != 0 {
			base += ":" + strconv.Itoa(cfg.httpsPort)
		}
	}
	code := u.setupCode
	if code == "" {
		code = os.Getenv(envSetupCode)
	}
	ui = webui.New(webui.Config{
		Domain: cfg.domain, Store: srv.Store(), Invites: invites, BaseURL: base,
		HTTPSPort: cfg.httpsPort, WebClientPath: webclient.Path, SetupCode: code,
		DomainStatus: cfg.siteStatus, CertStatus: cfg.certStatus, Reach: cfg.checkReach,
		// The domain step (site.go).
		Site: cfg.site, ApplySite: cfg.applySite, CheckDNS: cfg.checkDNS,
		C2SPort: portOrOff(cfg.c2sPort), C2STLSPort: portOrOff(cfg.c2sTLSPort), S2SPort: portOrOff(cfg.s2sPort),
		Server: srv, DataDir: cfg.data,
		ServerSettings: cfg.serverSettings, SaveServerSettings: cfg.saveServerSettings,
		UploadDir: filepath.Join(cfg.data, "uploads"), DeletionGrace: u.deletionGrace,
		AccountDeleted: func(ctx context.Context, user string) {
			if cfg.muc == nil {
				return
			}
			if _, err := cfg.muc.ForgetUser(ctx, user+"@"+cfg.domain); err != nil {
				log.Warn("removing a deleted account from group chats failed", "user", user, "err", err)
			}
		},
		Logger: log,
	})
	ui.Register(web)
	u.ui, u.invites, u.baseURL = ui, invites, base
	// Deletions whose grace period ended, expired password links.
	cfg.jobs = append(cfg.jobs, ui.Start)
}

// checkReach is the web pages' reachability check: the router's port
// mappings refreshed (with --port-mapping), then ddns/reach.Check with the
// --stun-servers.
func (c *serveConfig) checkReach(ctx context.Context) reach.Verdict {
	if c.portmap != nil {
		c.portmap.Refresh(ctx)
	}
	return reach.Check(ctx, reach.CheckConfig{
		Ports:       c.publicPorts(),
		STUNServers: splitList(c.acme.stunServers), Router: c.portmap,
	})
}

// domainStatus is the wizard's DNS step from the dynamic DNS updater.
func (c *serveConfig) domainStatus(ctx context.Context) webui.StepStatus {
	if c.acme.updater == nil {
		return webui.StepStatus{Summary: "Dynamic DNS is off: create these records at your DNS provider yourself, or start Hearth with --ddns and --dns-provider to let it keep them current."}
	}
	st := c.acme.updater.Status()
	s := webui.StepStatus{OK: st.LastError == "" && !st.LastUpdate.IsZero() && len(st.Conflicts) == 0}
	switch {
	case st.LastError != "":
		s.Summary = "Updating the DNS records failed: " + st.LastError
	case st.LastUpdate.IsZero():
		s.Summary = "Hearth is publishing the DNS records at " + st.Provider + "…"
	default:
		s.Summary = "The DNS records at " + st.Provider + " are current (checked " + st.LastCheck.Format(time.Kitchen) + ")."
	}
	for _, r := range st.Records {
		s.Details = append(s.Details, r.Name+" "+r.Type+" "+r.Value)
	}
	s.Details = append(s.Details, st.Conflicts...)
	return s
}

// certStatus is the wizard's certificate step from the ACME manager.
func (c *serveConfig) certStatus(ctx context.Context) webui.StepStatus {
	m := c.acme.mgr.Load()
	if m == nil {
		return webui.StepStatus{Summary: "Automatic certificates are off: Hearth uses a certificate it made itself, which chat apps ask you to accept once. Choose a Let's Encrypt certificate in the domain step (or start Hearth with --acme) to get one."}
	}
	st := m.Status()
	s := webui.StepStatus{OK: !st.SelfSigned}
	switch {
	case !st.SelfSigned:
		s.Summary = "Hearth has a certificate from " + st.Issuer + ", valid until " + st.NotAfter.Format("2 January 2006") + "."
	case st.LastError != "":
		s.Summary = "Getting a certificate failed; Hearth tries again at " + st.NextAttempt.Format(time.Kitchen) + "."
		s.Details = []string{st.LastError}
	default:
		s.Summary = "Hearth is getting a certificate (" + st.Challenge + ")…"
	}
	return s
}
