// Package proxy65 implements a XEP-0065 SOCKS5 Bytestreams proxy: a
// component (proxy.DOMAIN by default) that tells clients where its SOCKS5
// listener is, pairs the initiator's and the target's TCP connections by
// their SHA-1 DST.ADDR hash and, once the initiator activates the
// bytestream over XMPP, relays bytes between them. File transfers between
// two phones behind NATs go through it when no direct connection works.
//
// Only accounts of this server may use the proxy as initiators (learn its
// address and activate); a target connects with SOCKS5 only. Each
// bytestream is bounded in bytes (both directions together) and ends when
// no byte moved in either direction for an idle timeout; connections not
// activated within a pending timeout are closed.
package proxy65

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// NS is the XEP-0065 namespace (XEP-0065 §9.1), also the proxy's disco
// feature.
const NS = "http://jabber.org/protocol/bytestreams"

// Defaults for Config.
const (
	// DefaultPort is the SOCKS5 listener's port (the customary 7777).
	DefaultPort = 7777
	// DefaultMaxBytes bounds one bytestream, both directions together.
	DefaultMaxBytes = 1 << 30
	// DefaultIdleTimeout ends a bytestream through which nothing moved for
	// this long.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultPendingTimeout closes a connection not activated in time: the
	// target connects, answers the initiator, who connects and activates;
	// a minute is ample.
	DefaultPendingTimeout = time.Minute
	// DefaultHandshakeTimeout bounds the SOCKS5 negotiation.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxConns and DefaultMaxConnsPerIP bound simultaneous SOCKS5
	// connections, pending or relaying.
	DefaultMaxConns      = 256
	DefaultMaxConnsPerIP = 32
)

// Config configures the proxy. Zero fields take the defaults.
type Config struct {
	// Domain is the component's domain; empty means "proxy." + the XMPP
	// domain.
	Domain string
	// ListenAddrs are the IP addresses the SOCKS5 listener binds; empty
	// means 127.0.0.1.
	ListenAddrs []string
	// Port is the SOCKS5 port on every listen address; 0 picks a free one
	// (tests). Use DefaultPort in production.
	Port int
	// Host is the host name or IP address announced in <streamhost/>;
	// empty means the first listen address, or the XMPP domain when that is
	// a wildcard (0.0.0.0, ::).
	Host string
	// MaxBytes bounds one bytestream (both directions); then it is closed.
	MaxBytes int64
	// IdleTimeout, PendingTimeout and HandshakeTimeout: see the defaults.
	IdleTimeout, PendingTimeout, HandshakeTimeout time.Duration
	// MaxConns and MaxConnsPerIP bound simultaneous SOCKS5 connections.
	MaxConns, MaxConnsPerIP int
}

// Proxy is a running XEP-0065 proxy.
type Proxy struct {
	srv    *server.Server
	log    *slog.Logger
	domain jid.JID
	host   string
	port   int
	cfg    Config
	lns    []net.Listener
	wg     sync.WaitGroup
	done   chan struct{} // closed by Close

	mu      sync.Mutex
	streams map[string]*stream // by DST.ADDR hash
	conns   map[net.Conn]netip.Addr
	byIP    map[netip.Addr]int
	closed  bool
}

// Register starts the SOCKS5 listener and serves the proxy as a component of
// s at cfg.Domain (see server.AddComponent; the server's disco#items then
// lists it). Call Close at shutdown. It fails for a bad configuration, a
// taken domain or a failed listen, leaving nothing open.
func Register(s *server.Server, cfg Config) (*Proxy, error) {
	if cfg.Domain == "" {
		cfg.Domain = "proxy." + s.Domain().Domainpart()
	}
	d, err := jid.Parse(cfg.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("proxy65: invalid domain %q", cfg.Domain)
	}
	if len(cfg.ListenAddrs) == 0 {
		cfg.ListenAddrs = []string{"127.0.0.1"}
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.PendingTimeout <= 0 {
		cfg.PendingTimeout = DefaultPendingTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	p := &Proxy{
		srv: s, log: s.Logger().With("component", "proxy65"), domain: d, cfg: cfg, done: make(chan struct{}),
		streams: make(map[string]*stream), conns: make(map[net.Conn]netip.Addr), byIP: make(map[netip.Addr]int),
	}
	port := cfg.Port
	for _, a := range cfg.ListenAddrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			p.closeListeners()
			return nil, fmt.Errorf("proxy65: listen address %q is not an IP address", a)
		}
		network := "tcp6"
		if ip.Unmap().Is4() {
			network = "tcp4"
		}
		ln, err := net.Listen(network, net.JoinHostPort(a, strconv.Itoa(port)))
		if err != nil {
			p.closeListeners()
			return nil, fmt.Errorf("proxy65: %w", err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		p.lns = append(p.lns, ln)
		if p.host == "" {
			p.host = a
			if ip.IsUnspecified() {
				p.host = s.Domain().Domainpart()
			}
		}
	}
	p.port = port
	if cfg.Host != "" {
		p.host = cfg.Host
	}
	if err := s.AddComponent(d.String(), p); err != nil {
		p.closeListeners()
		return nil, err
	}
	for _, ln := range p.lns {
		p.log.Info("listening", "kind", "socks5-bytestreams", "addr", ln.Addr().String(), "jid", d.String())
		p.wg.Add(1)
		go p.accept(ln)
	}
	return p, nil
}

// Domain returns the component's JID.
func (p *Proxy) Domain() jid.JID { return p.domain }

// Port returns the SOCKS5 port.
func (p *Proxy) Port() int { return p.port }

// Host returns the host announced in <streamhost/>.
func (p *Proxy) Host() string { return p.host }

// Close stops accepting, closes every pending and relaying connection and
// waits for their goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	p.closed = true
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.closeListeners()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
	return nil
}

func (p *Proxy) closeListeners() {
	for _, ln := range p.lns {
		ln.Close()
	}
}

// HandleStanza is the server.Component entry point: IQ requests to the
// proxy's domain (disco#info, disco#items, the bytestreams query and
// activation) are answered through server.Route; a message gets
// service-unavailable; presence and IQ responses are ignored.
func (p *Proxy) HandleStanza(ctx context.Context, st *xmlel.Element, from, to jid.JID) {
	switch st.Name.Local {
	case "message":
		p.srv.Bounce(ctx, st, server.ErrServiceUnavailable)
		return
	case "iq":
	default:
		return
	}
	typ := st.Get("type")
	if typ != "get" && typ != "set" {
		return
	}
	res, err := p.answer(ctx, st, typ, from, to)
	if err != nil {
		se := server.ErrInternal
		var e *server.StanzaError
		if errors.As(err, &e) {
			se = e
		} else {
			p.log.Error("request failed", "err", err)
		}
		p.srv.Bounce(ctx, st, se)
		return
	}
	reply := xmlel.New(server.NSClient, "iq", "type", "result", "id", st.Get("id"), "from", to.String(), "to", from.String())
	if res != nil {
		reply.Add(res)
	}
	p.srv.Route(ctx, reply)
}

// answer returns the result payload (nil for an empty result) of an IQ
// get or set, or a stanza error.
func (p *Proxy) answer(_ context.Context, st *xmlel.Element, typ string, from, to jid.JID) (*xmlel.Element, error) {
	if st.Get("id") == "" {
		return nil, server.Errorf(server.ErrBadRequest, "IQ requests need an id (RFC 6120 §8.2.3)")
	}
	payloads := st.Elements()
	if len(payloads) != 1 {
		return nil, server.Errorf(server.ErrBadRequest, "an IQ request has exactly one payload element")
	}
	q := payloads[0]
	if to.Localpart() != "" || to.Resourcepart() != "" {
		return nil, server.ErrServiceUnavailable
	}
	switch {
	case typ == "get" && q.Name.Space == disco.NSInfo && q.Name.Local == "query":
		if q.Get("node") != "" {
			return nil, server.ErrItemNotFound
		}
		// XEP-0065 §4 (proxy discovery); XEP-0030 §3.1.
		return xmlel.New(disco.NSInfo, "query").Add(
			xmlel.New(disco.NSInfo, "identity", "category", "proxy", "type", "bytestreams", "name", "SOCKS5 Bytestreams Service"),
			xmlel.New(disco.NSInfo, "feature", "var", disco.NSInfo),
			xmlel.New(disco.NSInfo, "feature", "var", disco.NSItems),
			xmlel.New(disco.NSInfo, "feature", "var", NS),
		), nil
	case typ == "get" && q.Name.Space == disco.NSItems && q.Name.Local == "query":
		if q.Get("node") != "" {
			return nil, server.ErrItemNotFound
		}
		return xmlel.New(disco.NSItems, "query"), nil
	case q.Name.Space == NS && q.Name.Local == "query":
		if !p.srv.IsLocal(from) || from.Localpart() == "" {
			// XEP-0065 §4: a proxy may refuse entities; ours serves its own
			// accounts only.
			return nil, server.Errorf(server.ErrForbidden, "this proxy serves accounts of "+p.srv.Domain().String()+" only")
		}
		if typ == "get" {
			// XEP-0065 §4: the network address of the StreamHost.
			return xmlel.New(NS, "query").Add(xmlel.New(NS, "streamhost",
				"jid", p.domain.String(), "host", p.host, "port", strconv.Itoa(p.port))), nil
		}
		return nil, p.activate(q, from)
	}
	return nil, server.ErrServiceUnavailable
}

// activate handles <query sid><activate>target</activate></query> from the
// initiator (XEP-0065 §6.3.1): the bytestream hashed from sid, the
// requester's full JID and the target's must have both connections;
// item-not-found if there is no such bytestream (also when the requester is
// not its initiator, which hashes differently), not-allowed if only one
// party connected or it is active already.
func (p *Proxy) activate(q *xmlel.Element, from jid.JID) error {
	sid := q.Get("sid")
	act := q.Child(NS, "activate")
	if sid == "" || len(sid) > 1024 || act == nil || len(q.Elements()) != 1 {
		return server.Errorf(server.ErrBadRequest, "activation needs a 'sid' and one <activate/> (XEP-0065 §6.3.1)")
	}
	target, err := jid.Parse(act.Text())
	if err != nil {
		return server.Errorf(server.ErrJIDMalformed, "<activate/> must hold the target's JID")
	}
	h := Hash(sid, from, target)
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.streams[h]
	switch {
	case s == nil:
		return server.Errorf(server.ErrItemNotFound, "no bytestream with this sid from you to that target")
	case s.activated:
		return server.Errorf(server.ErrNotAllowed, "the bytestream is active already")
	case len(s.conns) < 2:
		return server.Errorf(server.ErrNotAllowed, "only one party is connected to the proxy")
	}
	s.activated = true
	s.touch()
	close(s.active)
	p.log.Debug("bytestream activated", "initiator", from.String(), "target", target.String())
	return nil
}

// Hash returns the SOCKS5 DST.ADDR of a bytestream: the lowercase hex
// SHA-1 of sid + initiator JID + target JID, the JIDs in their normalized
// string form (XEP-0065 §5.3.2, §6.3.2).
func Hash(sid string, initiator, target jid.JID) string {
	sum := sha1.Sum([]byte(sid + initiator.String() + target.String()))
	return hex.EncodeToString(sum[:])
}
