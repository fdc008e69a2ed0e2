package main

import (
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

// registerModules installs the feature modules (one package per XEP family).
func registerModules(srv *server.Server, cfg *serveConfig) {
}
