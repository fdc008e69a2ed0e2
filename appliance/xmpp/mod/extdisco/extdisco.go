// Package extdisco implements XEP-0215 External Service Discovery for the
// server: a local client asks its server which STUN and TURN services to use
// for calls (Jingle ICE-UDP, XEP-0176) and gets fresh time-limited TURN
// credentials in the TURN REST API scheme (draft-uberti-behave-turn-rest-00),
// which Hearth's own TURN server (package turn) or a coturn sharing the
// secret accepts.
//
// The services listed, all at Config.Host:
//
//	stun  udp  Port
//	turn  udp  Port     restricted, with username, password, expires
//	turn  tcp  Port     restricted, with username, password, expires
//	turns tcp  TLSPort  restricted, with username, password, expires (if TLSPort != 0)
package extdisco

import (
	"context"
	"encoding/xml"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/turn"
)

// NS is the XEP-0215 namespace (version 2, XEP-0215 §8.1), also its disco
// feature (§5).
const NS = "urn:xmpp:extdisco:2"

// DefaultTTL is how long handed-out TURN credentials stay valid. A TURN
// allocation dies within 10 minutes of its credentials expiring (refreshes
// are authenticated), so this bounds the length of a relayed call; one day
// is what Prosody's mod_turn_external uses too.
const DefaultTTL = 24 * time.Hour

// Config describes the STUN/TURN services announced. Secret is required.
type Config struct {
	// Host is the host name (or IP address) clients use to reach the TURN
	// server; empty means the XMPP domain.
	Host string
	// Port is the STUN/TURN port over UDP and TCP; 0 means turn.DefaultPort.
	Port int
	// TLSPort is the STUN/TURN over TLS ("turns") port; 0 leaves turns out.
	TLSPort int
	// Secret is the TURN REST API shared secret (turn.LoadOrCreateSecret).
	Secret string
	// TTL is the credentials' lifetime; 0 means DefaultTTL.
	TTL time.Duration
}

// Register answers <services/> and <credentials/> IQ gets addressed to the
// server (XEP-0215 §3.1-§3.3) and advertises NS in the server's disco#info
// (§5). It fails only when cfg.Secret is empty.
func Register(s *server.Server, cfg Config) error {
	if cfg.Secret == "" {
		return errors.New("extdisco: the TURN shared secret is required")
	}
	if cfg.Host == "" {
		cfg.Host = s.Domain().Domainpart()
	}
	if cfg.Port == 0 {
		cfg.Port = turn.DefaultPort
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	h := &handler{s: s, cfg: cfg}
	s.HandleIQ(server.ToServer, "get", xml.Name{Space: NS, Local: "services"}, h.services)
	s.HandleIQ(server.ToServer, "get", xml.Name{Space: NS, Local: "credentials"}, h.credentials)
	s.AddFeature(server.ToServer, NS)
	return nil
}

type handler struct {
	s   *server.Server
	cfg Config
}

// service is one announced external service.
type service struct {
	typ, transport string
	port           int
	restricted     bool
}

func (h *handler) list() []service {
	l := []service{
		{typ: "stun", transport: "udp", port: h.cfg.Port},
		{typ: "turn", transport: "udp", port: h.cfg.Port, restricted: true},
		{typ: "turn", transport: "tcp", port: h.cfg.Port, restricted: true},
	}
	if h.cfg.TLSPort != 0 {
		l = append(l, service{typ: "turns", transport: "tcp", port: h.cfg.TLSPort, restricted: true})
	}
	return l
}

// element renders sv for user, with fresh credentials when it is
// restricted (XEP-0215 §2: expires in UTC per XEP-0082, restricted='1').
func (h *handler) element(sv service, user string) *xmlel.Element {
	el := xmlel.New(NS, "service",
		"host", h.cfg.Host, "port", strconv.Itoa(sv.port), "transport", sv.transport, "type", sv.typ)
	if sv.restricted {
		name, pass, exp := turn.Credentials(h.cfg.Secret, user, h.cfg.TTL, h.s.Now())
		el.Set("username", name)
		el.Set("password", pass)
		el.Set("expires", exp.UTC().Format("2006-01-02T15:04:05Z"))
		el.Set("restricted", "1")
	}
	return el
}

// requester returns the local account asking, or forbidden (§2: a server
// may refuse entities without permission; only its own users get TURN
// credentials).
func (h *handler) requester(iq *server.IQ) (string, error) {
	user, ok := modutil.LocalUser(h.s, iq)
	if !ok {
		return "", server.ErrForbidden
	}
	return user, nil
}

// services answers <services [type]/> (XEP-0215 §3.1, §3.2): every
// service, or those of the requested type (none for an unknown type).
func (h *handler) services(_ context.Context, iq *server.IQ) (*xmlel.Element, error) {
	user, err := h.requester(iq)
	if err != nil {
		return nil, err
	}
	if len(iq.Payload.Elements()) != 0 {
		return nil, server.Errorf(server.ErrBadRequest, "<services/> must be empty in a request")
	}
	typ, filtered := iq.Payload.Get("type"), iq.Payload.Has("type")
	if filtered && !validToken(typ) {
		return nil, server.Errorf(server.ErrBadRequest, "'type' must be a service type such as stun or turn")
	}
	res := xmlel.New(NS, "services")
	if filtered {
		res.Set("type", typ)
	}
	for _, sv := range h.list() {
		if !filtered || sv.typ == typ {
			res.Add(h.element(sv, user))
		}
	}
	return res, nil
}

// credentials answers <credentials><service host type [port]/>...
// (XEP-0215 §3.3): every announced service matching one of the requested
// ones, restricted ones with fresh credentials; item-not-found if none
// matches.
func (h *handler) credentials(_ context.Context, iq *server.IQ) (*xmlel.Element, error) {
	user, err := h.requester(iq)
	if err != nil {
		return nil, err
	}
	type want struct {
		host, typ string
		port      int // 0: any
	}
	var wants []want
	for _, el := range iq.Payload.Elements() {
		if el.Name.Space != NS || el.Name.Local != "service" {
			return nil, server.Errorf(server.ErrBadRequest, "<credentials/> holds only <service/> elements")
		}
		w := want{host: el.Get("host"), typ: el.Get("type")}
		if w.host == "" || !validToken(w.typ) {
			return nil, server.Errorf(server.ErrBadRequest, "a <service/> needs 'host' and 'type' (XEP-0215 §3.3)")
		}
		if el.Has("port") {
			n, err := strconv.Atoi(el.Get("port"))
			if err != nil || n < 1 || n > 65535 {
				return nil, server.Errorf(server.ErrBadRequest, "'port' must be a port number")
			}
			w.port = n
		}
		wants = append(wants, w)
	}
	if len(wants) == 0 {
		return nil, server.Errorf(server.ErrBadRequest, "<credentials/> needs a <service/> (XEP-0215 §3.3)")
	}
	res := xmlel.New(NS, "credentials")
	for _, sv := range h.list() {
		for _, w := range wants {
			if strings.EqualFold(strings.TrimSuffix(w.host, "."), h.cfg.Host) && w.typ == sv.typ && (w.port == 0 || w.port == sv.port) {
				res.Add(h.element(sv, user))
				break
			}
		}
	}
	if len(res.Children) == 0 {
		return nil, server.Errorf(server.ErrItemNotFound, "no such service here")
	}
	return res, nil
}

// validToken reports whether s is a plausible service type (an XML NCName
// of letters, digits, '-', '_' and '.': "stun", "turn", "turns", "ftp").
func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
