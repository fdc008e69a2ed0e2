package main

import (
	"strconv"

	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

// registerWebTransports serves XMPP over WebSocket (RFC 7395) at
// /xmpp-websocket and over BOSH (XEP-0206) at /http-bind on the HTTP(S)
// server (both refuse plain HTTP), and XEP-0156 discovery at
// /.well-known/host-meta and /.well-known/host-meta.json with links under
// --public-url (default https://DOMAIN:HTTPS-PORT, the port left out when
// it is 443). At shutdown the HTTP server's hook ends the web streams with
// system-shutdown before it waits for held BOSH requests. It fails on an
// unusable --public-url.
func registerWebTransports(srv *server.Server, web *httpd.Server, cfg *serveConfig) error {
	base := cfg.publicURL
	if base == "" {
		base = "https://" + cfg.domain
		if cfg.httpsPort != 443 && cfg.httpsPort != 0 {
			base += ":" + strconv.Itoa(cfg.httpsPort)
		}
	}
	wsURL, boshURL, err := server.WebTransportURLs(base)
	if err != nil {
		return err
	}
	web.Handle(server.WebSocketPath, srv.WebSocketHandler())
	web.Handle(server.BOSHPath, srv.BOSHHandler(server.BOSHOptions{}))
	meta := server.HostMetaHandler(wsURL, boshURL)
	web.Handle("GET /.well-known/host-meta", meta)
	web.Handle("GET /.well-known/host-meta.json", meta)
	web.RegisterOnShutdown(srv.ShutdownWeb)
	return nil
}
