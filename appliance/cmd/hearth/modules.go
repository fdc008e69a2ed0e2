package main

import (
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/contact"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/last"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/ping"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/private"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/register"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/vcard"
	versionmod "github.com/hearthxmpp/hearth/appliance/xmpp/mod/version"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/xtime"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

// registerModules installs the feature modules (one package per XEP family)
// before any listener starts. It fails only on bad configuration (an invalid
// XEP-0157 contact address).
func registerModules(srv *server.Server, cfg *serveConfig) error {
	disco.Register(srv)
	ping.Register(srv)
	versionmod.Register(srv)
	xtime.Register(srv)
	last.Register(srv)
	vcard.Register(srv)
	private.Register(srv)
	register.Register(srv)
	return contact.Register(srv, cfg.contacts)
}
