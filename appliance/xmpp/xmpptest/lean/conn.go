// Package lean is a lean XMPP client for load generation: the load tool
// (scripts/load) and the Go benchmarks' client process (package leanbench)
// drive servers with it. It speaks RFC 6120 client-to-server streams over
// TCP with STARTTLS, SASL SCRAM-SHA-1 or SCRAM-SHA-256 (RFC 5802, RFC 7677;
// the server signature is checked) and resource binding, plus in-band
// registration (XEP-0077) and group chat joins (XEP-0045).
//
// It shares the CPU with the server under test, so it is lean: stanzas are
// pre-built bytes ([Message], [JoinPresence]...), each connection is read
// by a tag-nesting [Scanner] (no XML tree on the hot path; negotiation
// parses single elements with xmlel), and a [Reader] goroutine counts
// receipts with atomics. Unlike package xmpptest it has no testing.T
// helpers: every error is returned.
package lean

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/xdg-go/scram"
)

// Namespaces used by the client (RFC 6120, XEP-0077, XEP-0045).
const (
	nsTLS      = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL     = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind     = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession  = "urn:ietf:params:xml:ns:xmpp-session"
	nsMUC      = "http://jabber.org/protocol/muc"
	nsMUCUser  = "http://jabber.org/protocol/muc#user"
	nsMUCOwner = "http://jabber.org/protocol/muc#owner"
	nsStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
)

// ErrConflict is the XEP-0077 §3.1 answer for an account that already
// exists (an IQ error with the conflict condition).
var ErrConflict = errors.New("conflict: account exists")

// Mechanism is a SASL SCRAM mechanism name (RFC 5802, RFC 7677).
type Mechanism string

// The SCRAM mechanisms the client implements (no channel binding).
const (
	// SCRAMSHA1 is SCRAM-SHA-1 (RFC 5802), the one mechanism Hearth,
	// Prosody and ejabberd all store keys for.
	SCRAMSHA1 Mechanism = "SCRAM-SHA-1"
	// SCRAMSHA256 is SCRAM-SHA-256 (RFC 7677).
	SCRAMSHA256 Mechanism = "SCRAM-SHA-256"
)

// Credentials are one account's SASL credentials for a mechanism. They
// cache the salted password once the server's salt is known (RFC 5802 §5.1:
// a real client does the same), so logins after the first cost only HMACs.
// Safe for concurrent use.
type Credentials struct {
	mech Mechanism
	sc   *scram.Client
}

// NewCredentials returns the credentials of user (the account's localpart,
// the SASL authcid) with password for mech. The error is that of SASLprep
// on user or password, or an unknown mechanism.
func NewCredentials(mech Mechanism, user, password string) (*Credentials, error) {
	var h scram.HashGeneratorFcn
	switch mech {
	case SCRAMSHA1:
		h = scram.SHA1
	case SCRAMSHA256:
		h = scram.SHA256
	default:
		return nil, fmt.Errorf("lean: unknown mechanism %q", mech)
	}
	sc, err := h.NewClient(user, password, "")
	if err != nil {
		return nil, err
	}
	return &Credentials{mech: mech, sc: sc}, nil
}

// Dialer holds what every connection of a run shares. Its fields are read
// only; one Dialer serves any number of concurrent dials.
type Dialer struct {
	// Addr is the server's client-to-server port, host:port (STARTTLS,
	// RFC 6120 §5; no direct TLS).
	Addr string
	// Domain is the XMPP domain: the stream's to (RFC 6120 §4.7.2).
	Domain string
	// Resource is the resource to bind (RFC 6120 §7.6); "" lets the server
	// generate one.
	Resource string
	// TLS is the client's TLS configuration (ServerName, RootCAs or
	// InsecureSkipVerify, MinVersion).
	TLS *tls.Config
}

// Conn is one client-to-server stream (RFC 6120). Its methods are not safe
// for concurrent use, except that [Conn.Write] and [Conn.NetConn]'s Write
// may run while a [Reader] reads.
type Conn struct {
	d    *Dialer
	raw  net.Conn
	conn net.Conn // raw, then the TLS connection
	sc   *Scanner
	jid  string // full JID after resource binding
}

// Dial connects to d.Addr, opens the stream and negotiates STARTTLS
// (RFC 6120 §5), leaving the connection on the restarted TLS stream; it
// returns the stream features offered there (RFC 6120 §4.3.2). deadline
// bounds every step and stays set on the connection (reset it with
// NetConn().SetDeadline). Errors: the network's, the TLS handshake's, a
// missing STARTTLS offer, a <failure/> or a stream error.
func (d *Dialer) Dial(ctx context.Context, deadline time.Time) (*Conn, *xmlel.Element, error) {
	nd := net.Dialer{Deadline: deadline}
	raw, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, nil, err
	}
	raw.SetDeadline(deadline)
	x := &Conn{d: d, raw: raw, conn: raw, sc: NewScanner(raw)}
	fail := func(err error) (*Conn, *xmlel.Element, error) {
		x.Abort()
		return nil, nil, err
	}
	feats, err := x.openStream()
	if err != nil {
		return fail(err)
	}
	if feats.Child(nsTLS, "starttls") == nil {
		return fail(errors.New("server does not offer STARTTLS"))
	}
	if err := x.Write([]byte("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
		return fail(err)
	}
	el, err := x.NextElement()
	if err != nil {
		return fail(err)
	}
	if el.Name.Local != "proceed" {
		return fail(fmt.Errorf("STARTTLS: got <%s/>", el.Name.Local))
	}
	tc := tls.Client(raw, d.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(fmt.Errorf("TLS handshake: %w", err))
	}
	x.conn = tc
	x.sc.Reset(tc)
	if feats, err = x.openStream(); err != nil {
		return fail(err)
	}
	return x, feats, nil
}

// Login runs [Dialer.Dial], SASL authentication with cred ([Conn.Auth]),
// the stream restart, resource binding and, if the server requires it,
// session establishment ([Conn.Bind]). deadline bounds it all and stays set
// on the connection. On error the connection is closed.
func (d *Dialer) Login(ctx context.Context, deadline time.Time, cred *Credentials) (*Conn, error) {
	x, feats, err := d.Dial(ctx, deadline)
	if err != nil {
		return nil, err
	}
	if err := x.Auth(feats, cred); err != nil {
		x.Abort()
		return nil, err
	}
	x.sc.Reset(x.conn)
	if feats, err = x.openStream(); err != nil {
		x.Abort()
		return nil, err
	}
	if err := x.Bind(feats); err != nil {
		x.Abort()
		return nil, err
	}
	return x, nil
}

// JID returns the full JID bound by [Conn.Bind], or "" before.
func (x *Conn) JID() string { return x.jid }

// NetConn returns the connection under the stream: the TLS connection after
// STARTTLS. Use it for deadlines and the TLS state; reads belong to the
// Conn's scanner.
func (x *Conn) NetConn() net.Conn { return x.conn }

// Write writes b (pre-built stanzas, any number) on the stream.
func (x *Conn) Write(b []byte) error {
	_, err := x.conn.Write(b)
	return err
}

// Abort closes the TCP connection without closing the stream.
func (x *Conn) Abort() { x.raw.Close() }

// CloseStream sends the closing stream tag (RFC 6120 §4.4).
func (x *Conn) CloseStream() error { return x.Write(StreamClose) }

// WaitClosed reads until the server closes its stream or the connection,
// bounded by deadline, then closes the connection. Not to be used while a
// [Reader] runs.
func (x *Conn) WaitClosed(deadline time.Time) {
	x.conn.SetReadDeadline(deadline)
	for {
		kind, _, err := x.sc.Next()
		if err != nil || kind == ItemClose {
			break
		}
	}
	x.raw.Close()
}

// openStream sends the stream header and reads the server's header and
// stream features (RFC 6120 §4.3).
func (x *Conn) openStream() (*xmlel.Element, error) {
	if err := x.Write(StreamHeader(x.d.Domain)); err != nil {
		return nil, err
	}
	kind, _, err := x.sc.Next()
	if err != nil {
		return nil, err
	}
	if kind != ItemHeader {
		return nil, errors.New("no stream header")
	}
	el, err := x.NextElement()
	if err != nil {
		return nil, err
	}
	if el.Name.Local != "features" {
		return nil, fmt.Errorf("expected stream features, got <%s/>", el.Name.Local)
	}
	return el, nil
}

// Next returns the next top-level element's bytes, valid until the next
// read (see [Scanner.Next]). The end of the stream is an error.
func (x *Conn) Next() ([]byte, error) {
	kind, raw, err := x.sc.Next()
	if err != nil {
		return nil, err
	}
	if kind != ItemElement {
		return nil, errors.New("server closed the stream")
	}
	return raw, nil
}

// NextElement reads the next top-level element and parses it into a tree
// (for negotiation and setup; hot paths use [Conn.Next] or a [Reader]). A
// stream error (RFC 6120 §4.9) or the end of the stream is an error.
func (x *Conn) NextElement() (*xmlel.Element, error) {
	raw, err := x.Next()
	if err != nil {
		return nil, err
	}
	el, err := xmlel.Parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", raw, err)
	}
	if el.Name.Local == "error" && el.Name.Space == "stream" {
		return nil, fmt.Errorf("stream error: %s", el)
	}
	return el, nil
}

// WaitContaining reads top-level elements until one is named local or has
// a descendant of that name ([Contains]) and returns a copy of it; the
// elements before it are dropped.
func (x *Conn) WaitContaining(local string) ([]byte, error) {
	for {
		raw, err := x.Next()
		if err != nil {
			return nil, fmt.Errorf("waiting for <%s/>: %w", local, err)
		}
		if Contains(raw, local) {
			return bytes.Clone(raw), nil
		}
	}
}

// WaitIQ reads until the IQ response (type result or error) with id and
// returns it; other elements are passed to other, which may be nil (they
// are dropped) or return an error to stop.
func (x *Conn) WaitIQ(id string, other func(*xmlel.Element) error) (*xmlel.Element, error) {
	for {
		el, err := x.NextElement()
		if err != nil {
			return nil, err
		}
		if el.Name.Local == "iq" && el.Get("id") == id {
			t := el.Get("type")
			if t == "result" || t == "error" {
				return el, nil
			}
		}
		if other != nil {
			if err := other(el); err != nil {
				return nil, err
			}
		}
	}
}

// Auth authenticates with cred's SCRAM mechanism (RFC 6120 §6.4, RFC 5802
// §5) given the stream features feats, and checks the server signature of
// the outcome (§5.1 v=). Errors: the mechanism is not offered, a SASL
// <failure/> (its condition in the message), a bad server signature, more
// than four round trips.
func (x *Conn) Auth(feats *xmlel.Element, cred *Credentials) error {
	mech := string(cred.mech)
	offered := false
	if mechs := feats.Child(nsSASL, "mechanisms"); mechs != nil {
		for _, m := range mechs.ChildrenNamed("", "mechanism") {
			if strings.TrimSpace(m.Text()) == mech {
				offered = true
			}
		}
	}
	if !offered {
		return fmt.Errorf("server does not offer %s", mech)
	}
	conv := cred.sc.NewConversation()
	first, err := conv.Step("")
	if err != nil {
		return err
	}
	if err := x.Write([]byte("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='" + mech + "'>" +
		base64.StdEncoding.EncodeToString([]byte(first)) + "</auth>")); err != nil {
		return err
	}
	for range 4 {
		el, err := x.NextElement()
		if err != nil {
			return err
		}
		data, err := saslData(el.Text())
		if err != nil {
			return fmt.Errorf("SASL: bad base64 in <%s/>", el.Name.Local)
		}
		switch el.Name.Local {
		case "challenge":
			resp, err := conv.Step(string(data))
			if err != nil {
				return fmt.Errorf("SCRAM: %w", err)
			}
			if err := x.Write([]byte("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" +
				base64.StdEncoding.EncodeToString([]byte(resp)) + "</response>")); err != nil {
				return err
			}
		case "success":
			if len(data) > 0 && !conv.Done() {
				if _, err := conv.Step(string(data)); err != nil {
					return fmt.Errorf("SCRAM: %w", err)
				}
			}
			if !conv.Valid() {
				return errors.New("SCRAM: server signature not verified")
			}
			return nil
		case "failure":
			cond := ""
			if f := el.FirstElement(); f != nil {
				cond = f.Name.Local
			}
			return fmt.Errorf("SASL failure: %s", cond)
		default:
			return fmt.Errorf("SASL: unexpected <%s/>", el.Name.Local)
		}
	}
	return errors.New("SASL: too many round trips")
}

// Bind binds the Dialer's resource (RFC 6120 §7) given the restarted
// stream's features, and establishes a session when the server marks it as
// required (RFC 3921 §3; RFC 6121 Appendix E). The bound full JID is then
// [Conn.JID]. Errors: no bind feature, an IQ error (its condition in the
// message), a result without a JID.
func (x *Conn) Bind(feats *xmlel.Element) error {
	if feats.Child(nsBind, "bind") == nil {
		return errors.New("server does not offer resource binding")
	}
	res := ""
	if x.d.Resource != "" {
		res = "<resource>" + Escape(x.d.Resource) + "</resource>"
	}
	if err := x.Write([]byte("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" +
		res + "</bind></iq>")); err != nil {
		return err
	}
	el, err := x.WaitIQ("bind", nil)
	if err != nil {
		return err
	}
	if el.Get("type") != "result" {
		return fmt.Errorf("bind: %s", stanzaError(el))
	}
	b := el.Child(nsBind, "bind")
	if b == nil || b.ChildText("", "jid") == "" {
		return errors.New("bind: no JID in the result")
	}
	x.jid = strings.TrimSpace(b.ChildText("", "jid"))
	if s := feats.Child(nsSession, "session"); s != nil && s.Child("", "optional") == nil {
		if err := x.Write([]byte("<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")); err != nil {
			return err
		}
		el, err := x.WaitIQ("sess", nil)
		if err != nil {
			return err
		}
		if el.Get("type") != "result" {
			return fmt.Errorf("session: %s", stanzaError(el))
		}
	}
	return nil
}

// Available sends initial presence (RFC 6121 §4.2) followed by a ping
// (XEP-0199) and waits for the ping's answer (a result or an error, both
// fine), so the server has processed the presence when it returns: a
// stream's stanzas are handled in order. What arrives before the answer
// (the presence's reflection, RFC 6121 §4.2.2) is dropped.
func (x *Conn) Available() error {
	if err := x.Write([]byte("<presence/><iq type='get' id='avail'><ping xmlns='urn:xmpp:ping'/></iq>")); err != nil {
		return err
	}
	_, err := x.WaitIQ("avail", nil)
	return err
}

// Register creates the account user with password by the XEP-0077 §3.1
// flow on an unauthenticated TLS stream (after [Dialer.Dial]): get the
// form, then set username and password. An existing account yields
// [ErrConflict]; another IQ error its condition in the message.
func (x *Conn) Register(user, password string) error {
	if err := x.Write([]byte("<iq type='get' id='reg1'><query xmlns='jabber:iq:register'/></iq>")); err != nil {
		return err
	}
	el, err := x.WaitIQ("reg1", nil)
	if err != nil {
		return err
	}
	if el.Get("type") != "result" {
		return fmt.Errorf("registration form: %s", stanzaError(el))
	}
	if err := x.Write(RegisterSet(user, password)); err != nil {
		return err
	}
	if el, err = x.WaitIQ("reg2", nil); err != nil {
		return err
	}
	if el.Get("type") == "result" {
		return nil
	}
	if ErrorCondition(el) == "conflict" {
		return ErrConflict
	}
	return fmt.Errorf("registration: %s", stanzaError(el))
}

// JoinRoom enters room (a bare room JID, room@service) with nick, without
// history, and waits for the self-presence (XEP-0045 §7.2.3); other
// elements before it are dropped. It reports whether the room was just
// created and is locked (status 201, §10.1.1) and whether the occupant's
// affiliation is owner. A presence error is an error with its condition.
func (x *Conn) JoinRoom(room, nick string) (created, owner bool, err error) {
	occupant := room + "/" + nick
	if err := x.Write(JoinPresence(occupant)); err != nil {
		return false, false, err
	}
	for {
		el, err := x.NextElement()
		if err != nil {
			return false, false, err
		}
		if el.Name.Local != "presence" || !strings.EqualFold(el.Get("from"), occupant) {
			continue
		}
		if el.Get("type") == "error" {
			return false, false, fmt.Errorf("join %s: %s", occupant, stanzaError(el))
		}
		if xu := el.Child(nsMUCUser, "x"); xu != nil {
			for _, s := range xu.ChildrenNamed("", "status") {
				created = created || s.Get("code") == "201"
			}
			if it := xu.Child("", "item"); it != nil {
				owner = it.Get("affiliation") == "owner"
			}
		}
		return created, owner, nil
	}
}

// ConfigureRoom submits the owner form [RoomConfig](room, open) and waits
// for the result (XEP-0045 §10.1.2, §10.2). An IQ error is an error with its
// condition.
func (x *Conn) ConfigureRoom(room string, open bool) error {
	if err := x.Write(RoomConfig(room, open)); err != nil {
		return err
	}
	iq, err := x.WaitIQ("roomcfg", nil)
	if err != nil {
		return err
	}
	if iq.Get("type") != "result" {
		return fmt.Errorf("room configuration: %s", stanzaError(iq))
	}
	return nil
}

// ErrorCondition returns the defined condition of an error stanza
// (RFC 6120 §8.3.3: the child of <error/> in the stanzas namespace other
// than <text/>), or "".
func ErrorCondition(st *xmlel.Element) string {
	e := st.Child("", "error")
	if e == nil {
		return ""
	}
	for _, c := range e.Elements() {
		if c.Name.Space == nsStanzas && c.Name.Local != "text" {
			return c.Name.Local
		}
	}
	return ""
}

// stanzaError describes an error stanza by its condition or, lacking one,
// its XML.
func stanzaError(st *xmlel.Element) string {
	if c := ErrorCondition(st); c != "" {
		return c
	}
	return st.String()
}

// saslData decodes the base64 text of a SASL <challenge/> or <success/>
// (RFC 6120 §6.4.2): a lone "=" stands for empty data (§6.4.6), as does no
// text at all.
func saslData(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "=" {
		return nil, nil
	}
	return base64.StdEncoding.DecodeString(text)
}
