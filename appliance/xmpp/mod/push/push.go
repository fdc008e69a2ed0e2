// Package push implements the user's-server side of XEP-0357 Push
// Notifications: a client registers an XMPP Push Service (its app server)
// and node, and whenever the account misses a message because no session
// is connected the server publishes a notification there, which the app
// server forwards to the device through its platform's push service.
//
// A message counts as missed when it was stored offline (XEP-0160) or
// delivered to at least one hibernated session (XEP-0198 §5: the device
// lost its connection and needs waking). Only messages a person would
// want to be woken for are notified: types "chat" and "normal" carrying a
// <body/> or an OMEMO encrypted payload (XEP-0384); never errors,
// groupchat, headlines or XEP-0280 carbons.
//
// # Privacy (XEP-0357 §9)
//
// Notifications travel through third parties (the app server and the
// platform's push service). By default the summary form carries only
// 'message-count'; the operator may add 'last-message-sender' (the sender's
// bare JID) and 'last-message-body' (truncated to MaxBodyBytes) with
// IncludeSenderAndBody. Users cannot change this in-band, as §9 recommends.
//
// # Rate limit
//
// Each registration (device) gets at most one notification per Interval.
// Messages arriving meanwhile are counted and announced by one trailing
// notification at the end of the interval. 'message-count' is the number of
// notified messages since the account last sent initial presence from a new
// session.
package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Namespaces and form types.
const (
	// NS qualifies <enable/>, <disable/> and <notification/> (XEP-0357 §11.1).
	NS = "urn:xmpp:push:0"
	// FormSummary is the FORM_TYPE of the notification's summary form
	// (XEP-0357 §7, §11.3).
	FormSummary = "urn:xmpp:push:summary"
	// FormPublishOptions is the FORM_TYPE of the optional form in <enable/>,
	// sent back as the publish's <publish-options/> (XEP-0357 §5, §7).
	FormPublishOptions = "http://jabber.org/protocol/pubsub#publish-options"
	// NSPubSub is the XEP-0060 namespace of the publish request.
	NSPubSub = "http://jabber.org/protocol/pubsub"
	// NSData is the XEP-0004 data forms namespace.
	NSData = "jabber:x:data"
)

// Defaults.
const (
	// DefaultInterval is the shortest time between two notifications to one
	// registration.
	DefaultInterval = 5 * time.Second
	// DefaultMaxRegistrations is how many (service, node) registrations one
	// account may have.
	DefaultMaxRegistrations = 10
	// DefaultTimeout bounds the wait for an app server's answer when a
	// Requester is configured.
	DefaultTimeout = 30 * time.Second
	// MaxOptionsBytes is the largest publish-options form accepted at
	// enable, in bytes of serialized XML.
	MaxOptionsBytes = 4096
	// MaxBodyBytes is the longest 'last-message-body' sent, in bytes (cut at
	// a character boundary).
	MaxBodyBytes = 512
)

// nsOMEMO and nsOMEMO2 qualify OMEMO encrypted payloads (XEP-0384).
const (
	nsOMEMO  = "eu.siacs.conversations.axolotl"
	nsOMEMO2 = "urn:xmpp:omemo:2"
)

var errTooMany = &server.StanzaError{Type: stanza.Cancel, Condition: stanza.PolicyViolation}

// Requester sends the IQ request iq (type, from, to, id and payload set)
// and waits for its answer: it returns the result or error IQ, or an error
// when none came (ctx expired, recipient unreachable).
type Requester func(ctx context.Context, iq *xmlel.Element) (*xmlel.Element, error)

// Option configures Register.
type Option func(*Module)

// IncludeSenderAndBody adds 'last-message-sender' and 'last-message-body'
// to the summary form (XEP-0357 §7). Off by default: they expose who writes
// to the user, and what, to the app server and push service (§9).
func IncludeSenderAndBody(on bool) Option { return func(m *Module) { m.content = on } }

// Interval sets the shortest time between two notifications to one
// registration; d <= 0 keeps DefaultInterval.
func Interval(d time.Duration) Option {
	return func(m *Module) {
		if d > 0 {
			m.interval = d
		}
	}
}

// MaxRegistrations sets how many registrations one account may have; a
// further enable is refused with policy-violation. n <= 0 keeps
// DefaultMaxRegistrations.
func MaxRegistrations(n int) Option {
	return func(m *Module) {
		if n > 0 {
			m.maxRegs = n
		}
	}
}

// WithRequester makes notifications IQ requests whose answers are awaited
// (up to DefaultTimeout): an error answer disables the registration, as
// XEP-0357 §7.1 asks, except for the transient conditions (error type
// "wait", or resource-constraint, remote-server-timeout,
// internal-server-error), which keep it. Without a Requester notifications
// are sent with server.Route and answers are not seen.
func WithRequester(r Requester) Option { return func(m *Module) { m.request = r } }

// Module is the registered push service. Its methods are safe for
// concurrent use.
type Module struct {
	s        *server.Server
	content  bool
	interval time.Duration
	maxRegs  int
	request  Requester

	mu    sync.Mutex
	state map[regKey]*regState
}

type regKey struct{ user, service, node string }

// regState is the rate limiter and summary of one registration.
type regState struct {
	options []byte      // publish-options of the registration
	count   int         // messages notified since the user was last online
	sender  string      // of the latest message
	body    string      // of the latest message
	last    time.Time   // server clock time of the last notification
	timer   *time.Timer // trailing notification pending
}

// Register installs XEP-0357 on s and returns the module:
//
//   - IQ set <enable xmlns='urn:xmpp:push:0' jid='service' node='node'/>
//     to one's own account (no 'to' or one's bare JID) stores the
//     registration (§5), replacing the publish options of an existing one;
//     an optional <x xmlns='jabber:x:data'/> child must have FORM_TYPE
//     FormPublishOptions. Errors: bad-request (no node, wrong form),
//     jid-malformed, not-acceptable (form over MaxOptionsBytes),
//     policy-violation (beyond MaxRegistrations), forbidden (another
//     account);
//   - IQ set <disable jid='service' [node='node']/> removes that
//     registration, or all of the service's without node (§6); removing
//     nothing is not an error;
//   - a missed message (see the package documentation) is announced to
//     each registration of the recipient with an IQ set from the account's
//     bare JID to the service (§7):
//     <pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='…'>
//     <item><notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data'
//     type='form'>…summary…</x></notification></item></publish>
//     [<publish-options>form given at enable</publish-options>]</pubsub>;
//   - the account's disco#info lists urn:xmpp:push:0 (§4).
func Register(s *server.Server, opts ...Option) *Module {
	m := &Module{
		s:        s,
		interval: DefaultInterval,
		maxRegs:  DefaultMaxRegistrations,
		state:    make(map[regKey]*regState),
	}
	for _, o := range opts {
		o(m)
	}
	s.HandleIQ(server.ToAccount, "set", xml.Name{Space: NS, Local: "enable"}, m.enable)
	s.HandleIQ(server.ToAccount, "set", xml.Name{Space: NS, Local: "disable"}, m.disable)
	s.AddFeature(server.ToAccount, NS)
	s.OnMessageDelivered(m.delivered)
	s.OnAvailable(func(_ context.Context, sess *server.Session, _ *xmlel.Element, initial bool) {
		if initial {
			m.forget(func(k regKey) bool { return k.user == sess.Username() })
		}
	})
	return m
}

// enable stores a registration (XEP-0357 §5).
func (m *Module) enable(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(m.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "push notifications are enabled for one's own account")
	}
	svc, err := serviceJID(iq.Payload)
	if err != nil {
		return nil, err
	}
	node := iq.Payload.Get("node")
	if node == "" {
		return nil, server.Errorf(server.ErrBadRequest, "enable needs a node")
	}
	var options []byte
	if f := iq.Payload.Child(NSData, "x"); f != nil {
		if formType(f) != FormPublishOptions {
			return nil, server.Errorf(server.ErrBadRequest, "the form's FORM_TYPE must be "+FormPublishOptions)
		}
		options = []byte(f.String())
		if len(options) > MaxOptionsBytes {
			return nil, server.Errorf(server.ErrNotAcceptable, "publish options too large: "+strconv.Itoa(len(options))+
				" bytes, the limit is "+strconv.Itoa(MaxOptionsBytes))
		}
	}
	user := iq.From.Localpart()
	err = m.s.Store().EnablePush(ctx, user, store.PushRegistration{Service: svc, Node: node, Options: options}, m.maxRegs)
	if errors.Is(err, store.ErrQuotaExceeded) {
		return nil, server.Errorf(errTooMany, "at most "+strconv.Itoa(m.maxRegs)+" push registrations per account")
	}
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if st := m.state[regKey{user, svc, node}]; st != nil {
		st.options = options
	}
	m.mu.Unlock()
	return nil, nil
}

// disable removes registrations (XEP-0357 §6).
func (m *Module) disable(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if !modutil.IsOwner(m.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "push notifications are disabled for one's own account")
	}
	svc, err := serviceJID(iq.Payload)
	if err != nil {
		return nil, err
	}
	user, node := iq.From.Localpart(), iq.Payload.Get("node")
	if _, err := m.s.Store().DisablePush(ctx, user, svc, node); err != nil {
		return nil, err
	}
	m.forget(func(k regKey) bool { return k.user == user && k.service == svc && (node == "" || k.node == node) })
	return nil, nil
}

// serviceJID returns the normalised 'jid' attribute of <enable/> or
// <disable/>.
func serviceJID(p *xmlel.Element) (string, error) {
	if p.Get("jid") == "" {
		return "", server.Errorf(server.ErrBadRequest, "the push service 'jid' is required")
	}
	j, err := jid.Parse(p.Get("jid"))
	if err != nil {
		return "", server.Errorf(server.ErrJIDMalformed, "invalid push service JID")
	}
	return j.String(), nil
}

// formType returns a data form's FORM_TYPE value.
func formType(f *xmlel.Element) string {
	for _, fl := range f.ChildrenNamed(NSData, "field") {
		if fl.Get("var") == "FORM_TYPE" {
			return fl.ChildText(NSData, "value")
		}
	}
	return ""
}

// forget drops the rate limiter state of the registrations match selects,
// cancelling pending notifications.
func (m *Module) forget(match func(regKey) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, st := range m.state {
		if match(k) {
			if st.timer != nil {
				st.timer.Stop()
			}
			delete(m.state, k)
		}
	}
}

// delivered notifies the recipient's registrations of a missed message.
func (m *Module) delivered(ctx context.Context, msg *server.Message, to []*server.Session) {
	if !notifiable(msg) {
		return
	}
	missed := msg.Offline
	for _, sess := range to {
		if sess.Hibernated() {
			missed = true
			break
		}
	}
	if !missed {
		return
	}
	user := msg.To.Localpart()
	regs, err := m.s.Store().PushRegistrations(ctx, user)
	if err != nil {
		m.s.Logger().Error("push: reading registrations failed", "user", user, "err", err)
		return
	}
	sender, body := msg.From.Bare().String(), msg.Stanza.ChildText("", "body")
	for _, r := range regs {
		m.note(regKey{user, r.Service, r.Node}, r.Options, sender, body)
	}
}

// notifiable reports messages worth waking a device for.
func notifiable(msg *server.Message) bool {
	switch msg.Type {
	case "chat", "normal", "":
	default:
		return false
	}
	worth := false
	for _, c := range msg.Stanza.Elements() {
		switch {
		case c.Name.Space == "urn:xmpp:carbons:2" && (c.Name.Local == "received" || c.Name.Local == "sent"):
			return false
		case c.Name.Local == "body" && (c.Name.Space == server.NSClient || c.Name.Space == "jabber:server" || c.Name.Space == ""):
			worth = true
		case c.Name.Local == "encrypted" && (c.Name.Space == nsOMEMO || c.Name.Space == nsOMEMO2):
			worth = true
		}
	}
	return worth
}

// note counts a missed message for a registration and publishes now, or
// schedules the trailing notification if one was published less than an
// interval ago.
func (m *Module) note(k regKey, options []byte, sender, body string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.state[k]
	if st == nil {
		st = &regState{}
		m.state[k] = st
	}
	st.options, st.sender, st.body = options, sender, body
	st.count++
	if st.timer != nil {
		return // the pending notification will include this message
	}
	now := m.s.Now()
	if wait := m.interval - now.Sub(st.last); !st.last.IsZero() && wait > 0 {
		st.timer = time.AfterFunc(wait, func() { m.flush(k, st) })
		return
	}
	st.last = now
	go m.publish(k, m.notification(k, st))
}

// flush publishes the trailing notification of a registration.
func (m *Module) flush(k regKey, st *regState) {
	m.mu.Lock()
	if m.state[k] != st || st.timer == nil {
		m.mu.Unlock()
		return // forgotten meanwhile
	}
	st.timer = nil
	st.last = m.s.Now()
	iq := m.notification(k, st)
	m.mu.Unlock()
	m.publish(k, iq)
}

// notification builds the publish request (XEP-0357 §7). m.mu is held.
func (m *Module) notification(k regKey, st *regState) *xmlel.Element {
	form := xmlel.New(NSData, "x", "type", "form")
	field := func(name, value string) {
		form.Add(xmlel.New(NSData, "field", "var", name).Add(xmlel.New(NSData, "value").AddText(value)))
	}
	field("FORM_TYPE", FormSummary)
	field("message-count", strconv.Itoa(st.count))
	if m.content {
		field("last-message-sender", st.sender)
		if st.body != "" {
			field("last-message-body", truncate(st.body, MaxBodyBytes))
		}
	}
	pubsub := xmlel.New(NSPubSub, "pubsub").Add(
		xmlel.New(NSPubSub, "publish", "node", k.node).Add(
			xmlel.New(NSPubSub, "item").Add(
				xmlel.New(NS, "notification").Add(form))))
	if len(st.options) > 0 {
		if opts, err := xmlel.Parse(string(st.options)); err == nil {
			pubsub.Add(xmlel.New(NSPubSub, "publish-options").Add(opts))
		}
	}
	return xmlel.New(server.NSClient, "iq", "type", "set", "id", "push-"+randomID(),
		"from", k.user+"@"+m.s.Domain().String(), "to", k.service).Add(pubsub)
}

// publish sends a notification and, with a Requester, handles the answer
// (XEP-0357 §7.1).
func (m *Module) publish(k regKey, iq *xmlel.Element) {
	ctx := context.Background()
	if m.request == nil {
		m.s.Route(ctx, iq)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	ans, err := m.request(ctx, iq)
	if err != nil {
		m.s.Logger().Info("push: no answer from app server", "user", k.user, "service", k.service, "err", err)
		return
	}
	if ans.Get("type") != "error" {
		return
	}
	cond, typ := errorCondition(ans)
	if typ == string(stanza.Wait) || cond == string(stanza.ResourceConstraint) ||
		cond == string(stanza.RemoteServerTimeout) || cond == string(stanza.InternalServerError) {
		m.s.Logger().Info("push: transient app server error", "user", k.user, "service", k.service, "condition", cond)
		return
	}
	m.s.Logger().Info("push: app server refused notification, disabling", "user", k.user, "service", k.service, "node", k.node, "condition", cond)
	if _, err := m.s.Store().DisablePush(ctx, k.user, k.service, k.node); err != nil {
		m.s.Logger().Error("push: disabling registration failed", "user", k.user, "err", err)
	}
	m.forget(func(o regKey) bool { return o == k })
}

// errorCondition returns the defined condition and type of an error stanza.
func errorCondition(st *xmlel.Element) (cond, typ string) {
	e := st.Child("", "error")
	if e == nil {
		return "", ""
	}
	for _, c := range e.Elements() {
		if c.Name.Space == server.NSStanzas && c.Name.Local != "text" {
			return c.Name.Local, e.Get("type")
		}
	}
	return "", e.Get("type")
}

// truncate cuts s to at most n bytes at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// randomID returns a short random stanza id.
func randomID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
