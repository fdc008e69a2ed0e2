package main

import (
	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/blocking"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/bookmarks"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/carbons"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/contact"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/last"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/mam"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/pep"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/ping"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/private"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/push"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/register"
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
	return arch, contact.Register(srv, cfg.contacts)
}
