// Package adhoc implements XEP-0050 Ad-Hoc Commands on the server's own JID
// (the domain): a local account lists the commands it may run with
// disco#items on the node 'http://jabber.org/protocol/commands' (XEP-0050
// §2.2), and runs one with <command node='…'/> IQ sets, in one or several
// stages carried by a session id (XEP-0050 §2.4, §3.3), usually exchanging
// XEP-0004 data forms (form.go).
//
// Commands are added by other code with Service.Add; invite.go adds the
// invitation commands of Prosody's mod_invites_adhoc (XEP-0401 clients such
// as Snikket's apps and Conversations offer them as "Invite someone").
package adhoc

import (
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Namespaces.
const (
	// NS is the ad-hoc commands namespace (XEP-0050 §4.1), also the
	// well-known disco node listing the commands (XEP-0050 §2.2).
	NS = "http://jabber.org/protocol/commands"
	// NSDiscoInfo and NSDiscoItems are XEP-0030's namespaces.
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
)

// Actions a requester asks for (XEP-0050 §4.1 'action').
const (
	ActionExecute  = "execute"
	ActionCancel   = "cancel"
	ActionPrev     = "prev"
	ActionNext     = "next"
	ActionComplete = "complete"
)

// Status is a command's status in a response (XEP-0050 §4.1 'status').
type Status string

// Statuses (XEP-0050 §4.1).
const (
	// StatusExecuting: the command waits for the requester's next stage;
	// the session lives on.
	StatusExecuting Status = "executing"
	// StatusCompleted: the command has finished (successfully or not, see
	// NoteError); the session has ended.
	StatusCompleted Status = "completed"
	// StatusCanceled: the command was canceled; the session has ended.
	StatusCanceled Status = "canceled"
)

// Defaults of the session table (XEP-0050 §3.3 leaves the lifetime to the
// responder).
const (
	// DefaultSessionTimeout is how long a multi-stage session waits for the
	// requester's next stage.
	DefaultSessionTimeout = 10 * time.Minute
	// DefaultMaxSessions bounds the sessions one account has open at once.
	DefaultMaxSessions = 8
)

// Command is one ad-hoc command (XEP-0050 §2.2, §3.2).
type Command struct {
	// Node identifies the command: the disco item's node and the
	// <command/>'s 'node' (XEP-0050 §3.2). Required, unique.
	Node string
	// Name is the human-readable label of the disco item and of the
	// command node's identity (XEP-0050 §2.2). Required.
	Name string
	// Allowed reports whether the local account username may see and run
	// the command; it is asked for the command list, for disco#info on the
	// node and before every stage. nil allows every local account.
	Allowed func(ctx context.Context, username string) bool
	// Execute runs one stage. An error that is a *server.StanzaError is
	// sent as is (ErrBadPayload, server.ErrForbidden…), anything else as
	// internal-server-error; after an error the session (if any) stays at
	// the same stage, so the requester may submit again. Required.
	Execute func(ctx context.Context, req *Request) (*Response, error)
}

// Request is one stage of a command's execution as the command sees it.
type Request struct {
	// Node is the command's node.
	Node string
	// SessionID identifies the session (XEP-0050 §3.3); it is already set
	// on the first stage.
	SessionID string
	// Action is what the requester asked for: ActionExecute on the first
	// stage, then ActionNext, ActionPrev or ActionComplete ('execute' in a
	// session is resolved to the stage's default action, XEP-0050 §4.2).
	// Cancel is answered by the Service without calling the command.
	Action string
	// Stage counts the stages run successfully so far: 0 on the first.
	Stage int
	// From is the requester's full JID, Username its localpart.
	From     jid.JID
	Username string
	// Lang is the xml:lang of the <command/> or else the IQ, "" if none
	// (XEP-0050 §3.7).
	Lang string
	// Form is the first data form (XEP-0004) among the payload, normally
	// of type 'submit'; nil if none.
	Form *xmlel.Element
	// Payload is every child of the <command/> other than <actions/> and
	// <note/>, in order (XEP-0050 §3.5).
	Payload []*xmlel.Element
	// State is Response.State of the previous stage (nil on the first).
	State any
}

// Response is a command's answer to one stage.
type Response struct {
	// Status is StatusExecuting (more stages follow), StatusCompleted (the
	// default for "") or StatusCanceled.
	Status Status
	// Actions are the actions allowed next, among ActionPrev, ActionNext
	// and ActionComplete, and Default the one 'execute' stands for
	// (XEP-0050 §4.2). Only for StatusExecuting; no Actions means a
	// single-stage dialog whose only action is complete (XEP-0050 §3.4).
	Actions []string
	Default string
	// Notes are shown to the user (XEP-0050 §4.3); a command that
	// completes but fails includes a NoteError (XEP-0050 §3.6).
	Notes []Note
	// Payload is sent inside the <command/>, usually one data form.
	Payload []*xmlel.Element
	// State is kept with the session and handed to the next stage.
	State any
}

// Note types (XEP-0050 §4.3).
const (
	NoteInfo  = "info"
	NoteWarn  = "warn"
	NoteError = "error"
)

// Note is a <note/> of a response (XEP-0050 §4.3).
type Note struct {
	// Type is NoteInfo, NoteWarn or NoteError ("" means info).
	Type string
	Text string
}

// Errors specific to ad-hoc commands (XEP-0050 §4.4): the general
// condition with the specific one in the commands namespace.
var (
	// ErrMalformedAction: the 'action' is none of XEP-0050's.
	ErrMalformedAction = cmdError(stanza.Modify, stanza.BadRequest, "malformed-action", "unknown action")
	// ErrBadAction: the action is not allowed at this stage.
	ErrBadAction = cmdError(stanza.Modify, stanza.BadRequest, "bad-action", "this action is not allowed at this stage")
	// ErrBadPayload: the payload (usually the submitted form) is not
	// acceptable, for example a required field is missing. Commands return
	// it, with server.Errorf-like text through BadPayload.
	ErrBadPayload = cmdError(stanza.Modify, stanza.BadRequest, "bad-payload", "")
	// ErrBadSessionID: the session id is unknown, missing, or not this
	// requester's or this node's.
	ErrBadSessionID = cmdError(stanza.Modify, stanza.BadRequest, "bad-sessionid", "unknown session")
	// ErrSessionExpired: the session has ended (completed, canceled or
	// timed out).
	ErrSessionExpired = cmdError(stanza.Cancel, stanza.NotAllowed, "session-expired", "this session has ended; execute the command again")
)

// cmdError builds a stanza error with an application condition in the
// commands namespace.
func cmdError(typ stanza.ErrorType, cond stanza.Condition, specific, text string) *server.StanzaError {
	return &server.StanzaError{Type: typ, Condition: cond, Text: text, App: xmlel.New(NS, specific)}
}

// BadPayload returns ErrBadPayload with a text for the user ("the role must
// be limited, normal or admin").
func BadPayload(text string) *server.StanzaError {
	e := *ErrBadPayload
	e.Text = text
	return &e
}

// Option configures Register.
type Option func(*Service)

// SessionTimeout sets how long a session waits for the next stage
// (DefaultSessionTimeout); each stage starts the wait anew.
func SessionTimeout(d time.Duration) Option { return func(s *Service) { s.timeout = d } }

// MaxSessions bounds the sessions one account has open at once
// (DefaultMaxSessions); one more is refused with not-allowed (XEP-0050
// §3.3).
func MaxSessions(n int) Option { return func(s *Service) { s.maxSessions = n } }

// Service is the ad-hoc command responder of the server's JID. It is safe
// for concurrent use.
type Service struct {
	s           *server.Server
	timeout     time.Duration
	maxSessions int

	mu    sync.RWMutex
	cmds  map[string]*Command
	order []string

	sessions table

	baseInfo, baseItems server.IQHandler
}

// Register installs ad-hoc commands on the server's JID and returns the
// Service to Add commands to:
//
//   - the server's disco#info lists the feature
//     'http://jabber.org/protocol/commands' (XEP-0050 §2.1);
//   - disco#items on the node 'http://jabber.org/protocol/commands' lists
//     the commands the requesting account is Allowed to run, each with
//     jid = the domain (XEP-0050 §2.2); disco#info on that node has the
//     identity automation/command-list;
//   - disco#info on a command's node has the identity automation/
//     command-node and the features commands and jabber:x:data, or
//     forbidden for an account not Allowed (XEP-0050 §2.2);
//   - <iq type='set'><command node='…'/></iq> to the domain runs the
//     command (XEP-0050 §2.4), errors as XEP-0050 §4.4.
//
// It wraps the server's disco#info and disco#items handlers (other nodes go
// to them), so call it after disco.Register.
func Register(s *server.Server, opts ...Option) *Service {
	svc := &Service{s: s, timeout: DefaultSessionTimeout, maxSessions: DefaultMaxSessions, cmds: map[string]*Command{}}
	for _, o := range opts {
		o(svc)
	}
	if svc.timeout <= 0 {
		svc.timeout = DefaultSessionTimeout
	}
	if svc.maxSessions <= 0 {
		svc.maxSessions = DefaultMaxSessions
	}
	svc.sessions.init(svc.timeout)
	info := xml.Name{Space: NSDiscoInfo, Local: "query"}
	items := xml.Name{Space: NSDiscoItems, Local: "query"}
	svc.baseInfo = s.IQHandler(server.ToServer, "get", info)
	svc.baseItems = s.IQHandler(server.ToServer, "get", items)
	s.HandleIQ(server.ToServer, "get", info, svc.discoInfo)
	s.HandleIQ(server.ToServer, "get", items, svc.discoItems)
	cmd := xml.Name{Space: NS, Local: "command"}
	s.HandleIQ(server.ToServer, "set", cmd, svc.command)
	s.HandleIQ(server.ToServer, "get", cmd, func(context.Context, *server.IQ) (*xmlel.Element, error) {
		return nil, server.Errorf(server.ErrBadRequest, "commands are executed with an IQ of type set (XEP-0050 §2.4)")
	})
	s.AddFeature(server.ToServer, NS)
	s.OnSessionClosed(func(_ context.Context, sess *server.Session) {
		svc.sessions.dropJID(sess.JID().String(), svc.s.Now())
	})
	return svc
}

// Add makes c available. It panics if c has no Node, Name or Execute, or
// if its Node is taken (programming errors).
func (svc *Service) Add(c Command) {
	if c.Node == "" || c.Name == "" || c.Execute == nil {
		panic("adhoc: Command needs Node, Name and Execute")
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if _, ok := svc.cmds[c.Node]; ok || c.Node == NS {
		panic(fmt.Sprintf("adhoc: command node %q added twice", c.Node))
	}
	svc.cmds[c.Node] = &c
	svc.order = append(svc.order, c.Node)
}

// Commands returns the commands username may run, in the order added.
func (svc *Service) Commands(ctx context.Context, username string) []Command {
	svc.mu.RLock()
	cmds := make([]*Command, 0, len(svc.order))
	for _, n := range svc.order {
		cmds = append(cmds, svc.cmds[n])
	}
	svc.mu.RUnlock()
	var out []Command
	for _, c := range cmds {
		if allowed(ctx, c, username) {
			out = append(out, *c)
		}
	}
	return out
}

func (svc *Service) lookup(node string) *Command {
	svc.mu.RLock()
	defer svc.mu.RUnlock()
	return svc.cmds[node]
}

func allowed(ctx context.Context, c *Command, username string) bool {
	return c.Allowed == nil || c.Allowed(ctx, username)
}

// requester returns the local account asking, or ok=false.
func (svc *Service) requester(iq *server.IQ) (string, bool) {
	return modutil.LocalUser(svc.s, iq)
}

// discoInfo answers disco#info on the command list node and on command
// nodes (XEP-0050 §2.2) and hands every other query to the disco module.
func (svc *Service) discoInfo(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	node := iq.Payload.Get("node")
	if node == NS {
		q := xmlel.New(NSDiscoInfo, "query", "node", NS)
		q.Add(xmlel.New(NSDiscoInfo, "identity", "category", "automation", "type", "command-list", "name", "Commands"))
		q.Add(xmlel.New(NSDiscoInfo, "feature", "var", NS))
		return q, nil
	}
	if c := svc.lookup(node); node != "" && c != nil {
		user, ok := svc.requester(iq)
		if !ok || !allowed(ctx, c, user) {
			return nil, server.Errorf(server.ErrForbidden, "you may not run this command")
		}
		q := xmlel.New(NSDiscoInfo, "query", "node", node)
		q.Add(xmlel.New(NSDiscoInfo, "identity", "category", "automation", "type", "command-node", "name", c.Name))
		q.Add(xmlel.New(NSDiscoInfo, "feature", "var", NS))
		q.Add(xmlel.New(NSDiscoInfo, "feature", "var", NSData))
		return q, nil
	}
	if svc.baseInfo == nil {
		return nil, server.ErrItemNotFound
	}
	return svc.baseInfo(ctx, iq)
}

// discoItems answers disco#items on the command list node with the
// commands the requester may run (XEP-0050 §2.2) and hands every other
// query to the disco module.
func (svc *Service) discoItems(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	if iq.Payload.Get("node") != NS {
		if svc.baseItems == nil {
			return nil, server.ErrItemNotFound
		}
		return svc.baseItems(ctx, iq)
	}
	q := xmlel.New(NSDiscoItems, "query", "node", NS)
	user, ok := svc.requester(iq)
	if !ok {
		return q, nil
	}
	domain := svc.s.Domain().String()
	for _, c := range svc.Commands(ctx, user) {
		q.Add(xmlel.New(NSDiscoItems, "item", "jid", domain, "node", c.Node, "name", c.Name))
	}
	return q, nil
}

// command runs one stage of a command (XEP-0050 §2.4, §3.3, §4.4).
func (svc *Service) command(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	user, ok := svc.requester(iq)
	if !ok {
		return nil, server.Errorf(server.ErrForbidden, "commands are for this server's accounts")
	}
	p := iq.Payload
	node := p.Get("node")
	if node == "" {
		return nil, server.Errorf(server.ErrBadRequest, "the command has no node (XEP-0050 §4.1)")
	}
	action := p.Get("action")
	switch action {
	case "":
		action = ActionExecute
	case ActionExecute, ActionCancel, ActionPrev, ActionNext, ActionComplete:
	default:
		return nil, ErrMalformedAction
	}
	c := svc.lookup(node)
	if c == nil {
		return nil, server.Errorf(server.ErrItemNotFound, "no such command")
	}
	if !allowed(ctx, c, user) {
		return nil, server.Errorf(server.ErrForbidden, "you may not run this command")
	}
	req := &Request{Node: node, Action: action, From: iq.From, Username: user, Lang: lang(iq)}
	for _, el := range p.Elements() {
		if el.Name.Space == NS && (el.Name.Local == "actions" || el.Name.Local == "note") {
			continue
		}
		req.Payload = append(req.Payload, el)
		if req.Form == nil && el.Name.Space == NSData && el.Name.Local == "x" {
			req.Form = el
		}
	}
	now := svc.s.Now()
	owner := iq.From.String()
	sid := p.Get("sessionid")
	if sid == "" {
		if action != ActionExecute {
			return nil, ErrBadSessionID
		}
		return svc.first(ctx, c, req, owner, now)
	}
	sess, err := svc.sessions.acquire(sid, owner, node, now)
	if err != nil {
		return nil, err
	}
	if action == ActionCancel {
		svc.sessions.end(sess, now)
		return reply(node, sid, &Response{Status: StatusCanceled}), nil
	}
	if action == ActionExecute {
		action = sess.defaultAction()
	}
	if !slices.Contains(sess.allowedActions(), action) {
		svc.sessions.release(sess, nil, now)
		return nil, ErrBadAction
	}
	req.Action, req.SessionID, req.Stage, req.State = action, sid, sess.stage, sess.state
	res, err := svc.execute(c, ctx, req)
	if err == nil {
		err = res.check()
	}
	if err == errPanicked {
		svc.sessions.end(sess, now) // its state is unknown
		return nil, err
	}
	if err != nil {
		svc.sessions.release(sess, nil, now)
		return nil, err
	}
	svc.sessions.release(sess, res, now)
	return reply(node, sid, res), nil
}

// first runs the first stage of a new session.
func (svc *Service) first(ctx context.Context, c *Command, req *Request, owner string, now time.Time) (*xmlel.Element, error) {
	sess, err := svc.sessions.reserve(req.Username, owner, c.Node, now, svc.maxSessions)
	if err != nil {
		return nil, err
	}
	req.SessionID = sess.id
	res, err := svc.execute(c, ctx, req)
	if err == nil {
		err = res.check()
	}
	if err != nil {
		svc.sessions.drop(sess)
		return nil, err
	}
	svc.sessions.release(sess, res, now)
	return reply(c.Node, sess.id, res), nil
}

// check validates a command's response (programming errors become
// internal-server-error).
func (r *Response) check() error {
	if r == nil {
		return errors.New("adhoc: command returned no response")
	}
	switch r.Status {
	case "":
		r.Status = StatusCompleted
	case StatusExecuting, StatusCompleted, StatusCanceled:
	default:
		return fmt.Errorf("adhoc: invalid status %q", r.Status)
	}
	for _, a := range r.Actions {
		if a != ActionPrev && a != ActionNext && a != ActionComplete {
			return fmt.Errorf("adhoc: invalid action %q in Actions", a)
		}
	}
	if r.Default != "" && !slices.Contains(r.Actions, r.Default) {
		return fmt.Errorf("adhoc: default action %q is not in Actions", r.Default)
	}
	return nil
}

// reply renders the <command/> of a result IQ (XEP-0050 §4.1-§4.3).
func reply(node, sid string, r *Response) *xmlel.Element {
	el := xmlel.New(NS, "command", "node", node, "sessionid", sid, "status", string(r.Status))
	if r.Status == StatusExecuting && len(r.Actions) > 0 {
		acts := xmlel.New(NS, "actions")
		acts.Set("execute", r.Default)
		for _, a := range r.Actions {
			acts.Add(xmlel.New(NS, a))
		}
		el.Add(acts)
	}
	for _, n := range r.Notes {
		typ := n.Type
		if typ == "" {
			typ = NoteInfo
		}
		el.Add(xmlel.New(NS, "note", "type", typ).AddText(n.Text))
	}
	for _, p := range r.Payload {
		el.Add(p)
	}
	return el
}

// lang returns the xml:lang of the command, else of the IQ.
func lang(iq *server.IQ) string {
	if l := iq.Payload.Lang(); l != "" {
		return l
	}
	return iq.Stanza.Lang()
}

// newSessionID returns a fresh session id (130 random bits).
func newSessionID() string { return rand.Text() }

// errPanicked answers a command whose Execute panicked
// (internal-server-error); its session ends.
var errPanicked = server.Errorf(server.ErrInternal, "the command failed")

// execute runs c's Execute, turning a panic into internal-server-error so
// that the caller still ends or releases the session (a session left busy
// would hold one of the account's MaxSessions until its stream ends).
func (svc *Service) execute(c *Command, ctx context.Context, req *Request) (res *Response, err error) {
	defer func() {
		if v := recover(); v != nil {
			svc.s.Logger().Error("adhoc: command panicked", "node", c.Node, "user", req.Username, "panic", v)
			res, err = nil, errPanicked
		}
	}()
	return c.Execute(ctx, req)
}
