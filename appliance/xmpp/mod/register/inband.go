package register

import (
	"context"
	"encoding/xml"
	"errors"
	"time"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/stanza"
)

// Namespaces of in-band registration with invitations.
const (
	// NSFeature is the XEP-0077 §4 stream feature.
	NSFeature = "http://jabber.org/features/iq-register"
	// NSIBRToken is the XEP-0445 §3 stream feature: registration takes
	// invitation tokens.
	NSIBRToken = "urn:xmpp:ibr-token:0"
	// NSInviteLegacy is the stream feature earlier versions of XEP-0401
	// defined for the same thing; some clients still look for it.
	NSInviteLegacy = "urn:xmpp:invite"
	// NSPARS is the XEP-0379 namespace of the <preauth/> element (used by
	// XEP-0401 and XEP-0445 §4 to present a token).
	NSPARS = "urn:xmpp:pars:0"
)

// Registrar creates accounts for in-band registration; *invite.Service is
// the implementation.
type Registrar interface {
	// Check validates an invitation token (XEP-0445 §4); errors
	// invite.ErrUnknown, ErrExpired, ErrUsedUp, ErrRevoked or others.
	Check(ctx context.Context, token string) (store.Invite, error)
	// Redeem registers username with password through token, its expiry
	// judged at validAt; see invite.Service.Redeem for the errors.
	Redeem(ctx context.Context, token, username, password string, validAt time.Time) (string, store.Invite, error)
	// RegisterOpen registers without an invitation while registration is
	// open (invite.ErrClosed otherwise).
	RegisterOpen(ctx context.Context, username, password string) (string, error)
	// Open reports whether registration without an invitation is open.
	Open(ctx context.Context) bool
	// Now is the clock of Check.
	Now() time.Time
}

// streamKey is the PreAuthIQ.Values key of the invitation validated on the
// stream.
const streamKey = "register.invite"

// validated is what a successful <preauth/> leaves for the registration.
type validated struct {
	token string
	at    time.Time
}

// EnableInBand offers in-band registration (XEP-0077 §3) on secure streams
// before authentication, with invitation tokens (XEP-0445, XEP-0401):
//
//   - the stream features list <register
//     xmlns='http://jabber.org/features/iq-register'/> (XEP-0077 §4),
//     <register xmlns='urn:xmpp:ibr-token:0'/> (XEP-0445 §3) and the
//     legacy <register xmlns='urn:xmpp:invite'/>;
//   - <iq type='set'><preauth xmlns='urn:xmpp:pars:0' token='T'/></iq>
//     checks the token (XEP-0445 §4; its expiry is judged now, not again at
//     registration) and answers an empty result, or item-not-found with a
//     text saying whether it is unknown, expired, used or revoked; a
//     missing token is bad-request;
//   - a get of jabber:iq:register returns the form (<instructions/>,
//     <username/>, <password/>, XEP-0077 §3.1), or not-allowed when
//     neither a token was accepted nor registration is open;
//   - a set with <username/> and <password/> creates the account through
//     the accepted invitation (role, circles, mutual subscription with the
//     inviter, XEP-0379) or, without one, only while registration is open
//     (not-allowed otherwise); a taken username is conflict, an invalid
//     username or password, or a missing field, not-acceptable (XEP-0077
//     §3.1); <remove/> is not-allowed. Success ends the registration
//     exchange: the client authenticates next, on the same stream or a new
//     one.
//
// Passwords and tokens are never logged or echoed in errors.
func EnableInBand(s *server.Server, r Registrar) {
	h := &inband{s: s, r: r}
	s.AddPreAuthFeature(xmlel.New(NSFeature, "register"))
	s.AddPreAuthFeature(xmlel.New(NSIBRToken, "register"))
	s.AddPreAuthFeature(xmlel.New(NSInviteLegacy, "register"))
	s.HandlePreAuthIQ("set", xml.Name{Space: NSPARS, Local: "preauth"}, h.preauth)
	s.HandlePreAuthIQ("get", xml.Name{Space: NS, Local: "query"}, h.form)
	s.HandlePreAuthIQ("set", xml.Name{Space: NS, Local: "query"}, h.register)
}

type inband struct {
	s *server.Server
	r Registrar
}

var errConflict = &server.StanzaError{Type: stanza.Cancel, Condition: stanza.Conflict}

// tokenText explains a rejected token (XEP-0445 §4).
var tokenText = map[error]string{
	invite.ErrUnknown: "The invitation token is invalid",
	invite.ErrExpired: "The invitation has expired",
	invite.ErrUsedUp:  "The invitation has already been used",
	invite.ErrRevoked: "The invitation was revoked",
}

func (h *inband) preauth(ctx context.Context, iq *server.PreAuthIQ) (*xmlel.Element, error) {
	token := iq.Payload.Get("token")
	if token == "" {
		return nil, server.Errorf(server.ErrBadRequest, "<preauth/> needs a token (XEP-0445 §4)")
	}
	at := h.r.Now()
	_, err := h.r.Check(ctx, token)
	if err != nil {
		delete(iq.Values, streamKey)
		for e, text := range tokenText {
			if errors.Is(err, e) {
				h.s.Logger().Info("registration token refused", "ip", iq.RemoteIP, "reason", text)
				return nil, server.Errorf(server.ErrItemNotFound, text)
			}
		}
		return nil, err
	}
	iq.Values[streamKey] = validated{token: token, at: at}
	return nil, nil
}

func (h *inband) form(ctx context.Context, iq *server.PreAuthIQ) (*xmlel.Element, error) {
	_, ok := iq.Values[streamKey].(validated)
	if !ok && !h.r.Open(ctx) {
		return nil, server.Errorf(server.ErrNotAllowed, "Registration on this server is by invitation only")
	}
	q := xmlel.New(NS, "query")
	q.Add(xmlel.New(NS, "instructions").AddText("Choose a username and a password for your account on " + h.s.Domain().String() + "."))
	q.Add(xmlel.New(NS, "username"))
	q.Add(xmlel.New(NS, "password"))
	return q, nil
}

func (h *inband) register(ctx context.Context, iq *server.PreAuthIQ) (*xmlel.Element, error) {
	q := iq.Payload
	if q.Child(NS, "remove") != nil {
		return nil, server.Errorf(server.ErrNotAllowed, "there is no account to remove before logging in")
	}
	un, pw := q.Child(NS, "username"), q.Child(NS, "password")
	if un == nil || pw == nil || un.Text() == "" {
		return nil, server.Errorf(server.ErrNotAcceptable, "a registration needs <username/> and <password/> (XEP-0077 §3.1)")
	}
	v, ok := iq.Values[streamKey].(validated)
	var (
		user string
		err  error
	)
	if ok {
		user, _, err = h.r.Redeem(ctx, v.token, un.Text(), pw.Text(), v.at)
	} else {
		user, err = h.r.RegisterOpen(ctx, un.Text(), pw.Text())
	}
	switch {
	case err == nil:
		iq.Done = true
		delete(iq.Values, streamKey)
		h.s.Logger().Info("account registered in-band", "user", user, "ip", iq.RemoteIP)
		return nil, nil
	case errors.Is(err, invite.ErrClosed):
		return nil, server.Errorf(server.ErrNotAllowed, "Registration on this server is by invitation only")
	case errors.Is(err, invite.ErrUsernameTaken):
		return nil, server.Errorf(errConflict, "That username is taken")
	case errors.Is(err, invite.ErrInvalidUsername):
		return nil, server.Errorf(server.ErrNotAcceptable, "That username is not allowed")
	case errors.Is(err, invite.ErrInvalidPassword):
		return nil, server.Errorf(server.ErrNotAcceptable, "That password is not allowed")
	}
	for e, text := range tokenText {
		if errors.Is(err, e) {
			delete(iq.Values, streamKey)
			return nil, server.Errorf(server.ErrNotAllowed, text)
		}
	}
	return nil, err
}
