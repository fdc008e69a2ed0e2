// Package server is Hearth's XMPP core: the c2s listeners and stream
// negotiation (RFC 6120, on mellium.im/xmpp), the session table and router, and
// the instant-messaging rules of RFC 6121 (roster, subscriptions, presence,
// message delivery, offline storage). Feature modules (package mod/...) plug
// in through HandleIQ, AddFeature and the stream feature hooks.
package server

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// Config configures a Server. Domain, Store and Certificate or
// GetCertificate are required.
type Config struct {
	// Domain is the XMPP domain served (RFC 6120 §2.1), e.g. "example.org".
	Domain string
	// Store persists accounts, rosters and offline messages.
	Store *store.Store
	// Certificate is the TLS certificate for c2s (and later s2s/HTTPS).
	Certificate *tls.Certificate
	// GetCertificate, if set, chooses the certificate at each TLS handshake
	// instead of Certificate (hot-swapped ACME certificates, package
	// appliance/certs). The tls-server-end-point channel binding (RFC 5929
	// §4) then uses the certificate served in that connection's handshake.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Limits bound per-connection resource use; zero fields use DefaultLimits.
	Limits Limits
	// Version is reported by XEP-0092 software version and logs.
	Version string
	// Logger receives structured logs; nil uses slog.Default().
	Logger *slog.Logger
	// Now is the clock, injectable for tests; nil uses time.Now.
	Now func() time.Time
}

// Server is one running XMPP service for one domain.
type Server struct {
	domain  jid.JID
	store   *store.Store
	cert    *tls.Certificate
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error) // Config.GetCertificate
	limits  Limits
	version string
	log     *slog.Logger
	now     func() time.Time
	started time.Time

	tlsStartTLS *tls.Config
	tlsDirect   *tls.Config
	throttle    *auth.Throttle

	router     router
	components map[string]Component // by domain; fixed before serving
	conns      ipCounter
	iq         map[iqKey]IQHandler
	disco      discoRegistry
	streamF    []xmpp.StreamFeature // extra informational stream features
	preauth    preAuth              // IQs before authentication, such as registration (preauth.go)
	hooks      hooks
	bind2      bind2Registry // XEP-0386 inline features of modules
	web        webRegistry   // WebSocket and BOSH connections (framing.go)

	smMu    sync.Mutex
	smIndex map[string]*Session // resumable sessions by XEP-0198 id

	offlineMu [offlineStripes]sync.Mutex // offline delivery, striped by account (message.go)

	pendingMu sync.Mutex
	pending   map[string]chan *xmlel.Element // server-originated IQs awaiting an answer, by id

	mu        sync.Mutex
	listeners []net.Listener
	wg        sync.WaitGroup
	closing   bool
	// negotiating are the TCP connections not bound yet (c2s.go): Shutdown
	// ends their negotiation at once instead of waiting for AuthTimeout.
	negotiating map[*limitConn]struct{}
}

// New validates cfg and returns a Server ready for Listen. It registers the
// core handlers (roster, session, bind-related IQs); feature modules are added
// by the caller before serving.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || (cfg.Certificate == nil && cfg.GetCertificate == nil) {
		return nil, errors.New("server: Store and Certificate or GetCertificate are required")
	}
	d, err := jid.Parse(cfg.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("server: invalid domain %q", cfg.Domain)
	}
	s := &Server{
		domain:  d,
		store:   cfg.Store,
		cert:    cfg.Certificate,
		getCert: cfg.GetCertificate,
		limits:  cfg.Limits.withDefaults(),
		version: cfg.Version,
		log:     cfg.Logger,
		now:     cfg.Now,
		iq:      make(map[iqKey]IQHandler),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.version == "" {
		s.version = "dev"
	}
	s.started = s.now()
	s.router.users = make(map[string]*userSessions)
	s.smIndex = make(map[string]*Session)
	s.throttle = auth.NewThrottle(s.limits.LoginFailures, s.limits.LoginWindow)
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.getCert != nil {
		base.GetCertificate = s.serveCertificate
	} else {
		base.Certificates = []tls.Certificate{*cfg.Certificate}
	}
	s.tlsStartTLS = base.Clone()
	s.tlsDirect = base.Clone()
	// XEP-0368 §3: direct TLS clients negotiate ALPN "xmpp-client".
	s.tlsDirect.NextProtos = []string{"xmpp-client"}
	s.disco.init()
	s.registerCore()
	return s, nil
}

// serveCertificate is the c2s tls.Config GetCertificate when
// Config.GetCertificate is set: it remembers the certificate on the
// connection (ClientHelloInfo.Conn is our limitConn) for the
// tls-server-end-point channel binding.
func (s *Server) serveCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, err := s.getCert(hello)
	if err == nil && c != nil {
		if lc, ok := hello.Conn.(*limitConn); ok {
			lc.served.Store(c)
		}
	}
	return c, err
}

// Domain returns the served domain as a JID.
func (s *Server) Domain() jid.JID { return s.domain }

// Store returns the server's store, for feature modules.
func (s *Server) Store() *store.Store { return s.store }

// Logger returns the server's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// Now returns the server clock's current time.
func (s *Server) Now() time.Time { return s.now() }

// Started returns when the server was created (XEP-0012 server uptime).
func (s *Server) Started() time.Time { return s.started }

// Version returns the software version string (XEP-0092).
func (s *Server) Version() string { return s.version }

// Limits returns the effective limits.
func (s *Server) Limits() Limits { return s.limits }

// IsLocal reports whether j's domain is the served domain.
func (s *Server) IsLocal(j jid.JID) bool { return j.Domainpart() == s.domain.Domainpart() }

// AddStreamFeature adds an informational stream feature (for example XEP-0115
// caps) listed in stream features after authentication.
func (s *Server) AddStreamFeature(f xmpp.StreamFeature) { s.streamF = append(s.streamF, f) }

// ListenC2S starts accepting client connections on addr ("host:port"). With
// directTLS the socket speaks TLS from the first byte (XEP-0368); otherwise
// STARTTLS is required before authentication (RFC 6120 §5). It returns the
// bound address (useful with port 0) or the listen error.
func (s *Server) ListenC2S(ctx context.Context, addr string, directTLS bool) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil, errors.New("server: shutting down")
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	kind := "c2s-starttls"
	if directTLS {
		kind = "c2s-directtls"
	}
	s.log.Info("listening", "kind", kind, "addr", ln.Addr().String())
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var delay time.Duration
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// Temporary failures such as EMFILE: back off, keep serving.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay < time.Second {
					delay *= 2
				}
				s.log.Warn("accept failed", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			delay = 0
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serveC2S(ctx, c, directTLS)
			}()
		}
	}()
	return ln.Addr(), nil
}

// Shutdown stops accepting, ends every session, and every TCP stream still
// negotiating, with stream error system-shutdown (RFC 6120 §4.9.3.19) and
// waits until connections close or ctx expires.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.listeners = nil
	// Streams still negotiating: their next read times out, and the
	// negotiation ends with system-shutdown (c2sConn.fail).
	for lc := range s.negotiating {
		lc.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	for _, sess := range s.router.all() {
		sess.Terminate(newStreamError(streamSystemShutdown, "server shutting down"))
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// isClosing reports whether Shutdown has begun.
func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// iqKey selects an IQ handler: the request type ("get" or "set"), the payload's
// qualified name and whether the IQ is addressed to the server or an account.
type iqKey struct {
	target Target
	typ    string
	name   xml.Name
}

// Target says whom an IQ handler answers for (RFC 6120 §10.3, RFC 6121 §8.5.2.1.3).
type Target int

const (
	// ToServer handles IQs addressed to the domain itself.
	ToServer Target = iota
	// ToAccount handles IQs addressed to a local account's bare JID (or with no
	// 'to', which means the sender's own account, RFC 6120 §10.3.3).
	ToAccount
)

// IQ is an IQ request being handled by a feature module.
type IQ struct {
	// Stanza is the whole request; Payload its first child element.
	Stanza  *xmlel.Element
	Payload *xmlel.Element
	// Type is "get" or "set".
	Type string
	// From is the requester's full JID; To the addressed JID (the domain or an
	// account's bare JID, never empty).
	From, To jid.JID
	// Session is the requesting local session, or nil for requests that came
	// from elsewhere.
	Session *Session
}

// IQHandler answers one IQ request. It returns the payload for the result IQ
// (nil for an empty result) or an error: a *StanzaError is sent as is, any
// other error as internal-server-error and logged.
type IQHandler func(ctx context.Context, iq *IQ) (*xmlel.Element, error)

// HandleIQ registers h for IQs of type typ ("get"/"set") whose payload is named
// name and which are addressed to target. A later registration replaces an
// earlier one. Register every handler before the first ListenC2S: the
// handler table is not locked.
func (s *Server) HandleIQ(target Target, typ string, name xml.Name, h IQHandler) {
	s.iq[iqKey{target: target, typ: typ, name: name}] = h
}

// IQHandler returns the handler registered for (target, typ, name), or nil.
// A module that extends another module's protocol wraps it: it fetches the
// existing handler and registers its own that calls it (XEP-0411 over
// XEP-0049, XEP-0398 over XEP-0054), instead of copying its rules.
func (s *Server) IQHandler(target Target, typ string, name xml.Name) IQHandler {
	return s.iq[iqKey{target: target, typ: typ, name: name}]
}

// AddFeature adds disco#info features (XEP-0030 §3.1) advertised for target.
func (s *Server) AddFeature(target Target, vars ...string) {
	s.disco.addFeature(target, vars...)
}

// AddIdentity adds a disco#info identity (XEP-0030 §3.1) for target.
func (s *Server) AddIdentity(target Target, category, typ, name string) {
	s.disco.addIdentity(target, Identity{Category: category, Type: typ, Name: name})
}

// AddExtension adds a data form (XEP-0128) to the server's disco#info, such
// as XEP-0157 contact addresses.
func (s *Server) AddExtension(form *xmlel.Element) { s.disco.addExtension(form) }

// DiscoInfo returns the identities, features and extension forms advertised
// for target, sorted as XEP-0115 §5.1 requires for hashing.
func (s *Server) DiscoInfo(target Target) ([]Identity, []string, []*xmlel.Element) {
	return s.disco.info(target)
}

// Identity is a disco#info identity (XEP-0030 §3.1).
type Identity struct {
	Category, Type, Name, Lang string
}

type discoRegistry struct {
	mu         sync.RWMutex
	features   [2]map[string]struct{}
	identities [2][]Identity
	extensions []*xmlel.Element
}

func (d *discoRegistry) init() {
	for i := range d.features {
		d.features[i] = make(map[string]struct{})
	}
}

func (d *discoRegistry) addFeature(t Target, vars ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range vars {
		d.features[t][v] = struct{}{}
	}
}

func (d *discoRegistry) addIdentity(t Target, id Identity) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.identities[t] = append(d.identities[t], id)
}

func (d *discoRegistry) addExtension(form *xmlel.Element) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.extensions = append(d.extensions, form)
}

func (d *discoRegistry) info(t Target) ([]Identity, []string, []*xmlel.Element) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	ids := append([]Identity(nil), d.identities[t]...)
	sort.Slice(ids, func(i, j int) bool {
		a, b := ids[i], ids[j]
		if a.Category != b.Category {
			return a.Category < b.Category
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.Lang < b.Lang
	})
	feats := make([]string, 0, len(d.features[t]))
	for f := range d.features[t] {
		feats = append(feats, f)
	}
	sort.Strings(feats)
	var ext []*xmlel.Element
	if t == ToServer {
		ext = append(ext, d.extensions...)
	}
	return ids, feats, ext
}

func xmlAttrLang(lang string) xml.Attr {
	return xml.Attr{Name: xml.Name{Space: xmlel.NSXML, Local: "lang"}, Value: lang}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
