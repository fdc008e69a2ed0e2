package main

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/webclient"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/adhoc"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/blocking"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/bookmarks"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/carbons"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/contact"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/last"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/mam"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/muc"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/pep"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/ping"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/private"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/push"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/register"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/upload"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/vcard"
	versionmod "github.com/hearthxmpp/hearth/appliance/xmpp/mod/version"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/xtime"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

// registerModules installs the feature modules (one package per XEP family)
// and their HTTP handlers on web before any listener starts. It fails only on bad configuration (an invalid
// XEP-0157 contact address).
func registerModules(srv *server.Server, web *httpd.Server, cfg *serveConfig) (*mam.Archive, error) {
	disco.Register(srv)
	ping.Register(srv)
	versionmod.Register(srv)
	xtime.Register(srv)
	last.Register(srv)
	vcard.Register(srv)
	private.Register(srv)
	register.Register(srv)
	// PEP answers account disco#items (after disco's empty one); the avatar
	// conversion wraps vcard's set handler and bookmarks wrap private's, so
	// they come after those.
	svc := pep.Register(srv)
	pep.RegisterVCardConversion(srv, svc)
	bookmarks.Register(srv, svc)
	// Order matters for the message hooks: blocking first (a refused message
	// is neither archived nor copied), then the archive (so sent carbons carry
	// the sender's stanza-id), then carbons and push.
	blocking.Register(srv)
	arch := mam.Register(srv, mam.Retention(cfg.mamRetention))
	carbons.Register(srv)
	push.Register(srv, push.IncludeSenderAndBody(cfg.pushContent), push.WithRequester(srv.RequestFrom))
	// XEP-0045 group chat on groups.DOMAIN; room archives kept like the user archive.
	if err := registerMUC(srv, cfg); err != nil {
		return nil, err
	}
	// Circles get their group chats there, with bookmarks in PEP.
	cfg.groupChat = muc.CircleChats{MUC: cfg.muc, PEP: svc}
	// XMPP over WebSocket and BOSH, with XEP-0156 discovery (webxmpp.go).
	if err := registerWebTransports(srv, web, cfg); err != nil {
		return nil, err
	}
	// The web chat (Converse.js) for family members without an app.
	web.Handle("GET "+webclient.Path, webclient.Handler(webclient.Config{
		Domain: cfg.domain, MUCDomain: cfg.mucDomain,
		WebSocketPath: server.WebSocketPath, BOSHPath: server.BOSHPath, HTTPSPort: cfg.httpsPort,
	}))
	// Registration with invitations (XEP-0445, XEP-0401), the setup wizard,
	// the invitation landing pages and the admin pages.
	cfg.ui.setup(srv, web, cfg, srv.Logger())
	// XEP-0050 ad-hoc commands on the domain (after disco, whose node
	// queries it wraps), with the XEP-0401 invitation commands that chat
	// apps offer as "Invite someone".
	adhoc.Register(srv).AddInviteCommands(adhoc.InviteConfig{Invites: cfg.ui.invites, BaseURL: cfg.ui.baseURL})
	// XEP-0363 file upload on upload.DOMAIN, files under DATA/uploads.
	if err := registerUpload(srv, web, cfg); err != nil {
		return nil, err
	}
	// Calls and file transfer: STUN/TURN with XEP-0215, the XEP-0065 proxy.
	if err := registerCalls(srv, cfg); err != nil {
		return nil, err
	}
	return arch, contact.Register(srv, cfg.contacts)
}

// registerUpload installs the upload component with its HTTPS handlers and
// adds its retention job to cfg.jobs. Without an HTTPS port or --upload-url
// there is nowhere to upload to, and it installs nothing.
func registerUpload(srv *server.Server, web *httpd.Server, cfg *serveConfig) error {
	base := cfg.uploadURL
	if base == "" {
		if cfg.httpsPort == 0 {
			srv.Logger().Info("file upload (XEP-0363) is off: no --https-port and no --upload-url")
			return nil
		}
		base = "https://" + cfg.domain
		if cfg.httpsPort != 443 {
			base += ":" + strconv.Itoa(cfg.httpsPort)
		}
	}
	domain := cfg.uploadDomain
	if domain == "" {
		domain = "upload." + cfg.domain
	}
	up, err := upload.Register(srv, web, filepath.Join(cfg.data, "uploads"),
		upload.Domain(domain), upload.BaseURL(base),
		upload.MaxFileSize(int64(cfg.uploadMaxFile)), upload.DailyQuota(int64(cfg.uploadQuota)),
		upload.StorageCap(int64(cfg.uploadCap)), upload.Retention(cfg.uploadRetention),
		// An http:// base is the operator's choice (a TLS-terminating proxy).
		upload.AllowPlainHTTP(strings.HasPrefix(base, "http://")))
	if err != nil {
		return err
	}
	cfg.jobs = append(cfg.jobs, up.Start)
	return nil
}

// registerMUC installs the group chat component (XEP-0045) at --muc-domain
// (default groups.DOMAIN) and adds its archive retention job to cfg.jobs.
func registerMUC(srv *server.Server, cfg *serveConfig) error {
	if cfg.mucDomain == "" {
		cfg.mucDomain = "groups." + cfg.domain
	}
	svc, err := muc.Register(srv, muc.Options{Domain: cfg.mucDomain, Retention: cfg.mamRetention})
	if err != nil {
		return err
	}
	cfg.jobs = append(cfg.jobs, svc.Start)
	cfg.muc = svc
	return nil
}
