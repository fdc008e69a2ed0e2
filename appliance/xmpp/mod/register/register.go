// Package register implements XEP-0077 In-Band Registration: an
// authenticated user changing their own password (Register), and, with
// EnableInBand, account creation on a secure stream before authentication
// (XEP-0077 §3) through invitation tokens (XEP-0445, XEP-0401) or, when the
// operator opened registration, without one. Registration is closed by
// default: invitations only.
package register

import (
	"context"
	"encoding/xml"
	"errors"
	"github.com/hearthxmpp/hearth/appliance/account"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// NS is the XEP-0077 namespace (XEP-0077 §3).
const NS = "jabber:iq:register"

// MaxPasswordBytes bounds the length of a new password (XEP-0077 §3.3).
const MaxPasswordBytes = 1024

// Register handles jabber:iq:register requests from authenticated users,
// addressed to the server or with no 'to' (XEP-0077 §3.3):
//
//   - get returns <registered/> with the user's username (XEP-0077 §3.1);
//   - set with <username/> and <password/> changes the user's own password:
//     SCRAM keys are derived with auth.DeriveCredentials and replace the
//     stored ones. The username must be the requester's own (bad-request
//     otherwise, as in Prosody); a missing <username/> or <password/> is
//     bad-request; an empty, over-long or PRECIS-invalid password is
//     not-acceptable and leaves the old password in place;
//   - set with <remove/> (account cancellation, XEP-0077 §3.2) is not-allowed:
//     accounts are deleted by the administrator.
//
// Errors do not echo the request (XEP-0077 §3.3: the password must not come
// back). The server advertises jabber:iq:register in disco#info, so clients
// know that in-band password change is possible (XEP-0077 §10), as Prosody
// does.
func Register(s *server.Server) {
	h := &handler{s: s}
	name := xml.Name{Space: NS, Local: "query"}
	s.HandleIQ(server.ToServer, "get", name, h.get)
	s.HandleIQ(server.ToServer, "set", name, h.change)
	s.AddFeature(server.ToServer, NS)
}

type handler struct{ s *server.Server }

// get tells the user they are registered and under which username (XEP-0077
// §3.1).
func (h *handler) get(_ context.Context, iq *server.IQ) (*xmlel.Element, error) {
	user, ok := modutil.LocalUser(h.s, iq)
	if !ok {
		return nil, server.ErrForbidden
	}
	q := xmlel.New(NS, "query")
	q.Add(xmlel.New(NS, "registered"))
	q.Add(xmlel.New(NS, "username").AddText(user))
	q.Add(xmlel.New(NS, "password"))
	return q, nil
}

// change changes the requester's password (XEP-0077 §3.3) or refuses
// cancellation (XEP-0077 §3.2).
func (h *handler) change(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	user, ok := modutil.LocalUser(h.s, iq)
	if !ok {
		return nil, server.ErrForbidden
	}
	q := iq.Payload
	if q.Child(NS, "remove") != nil {
		return nil, server.Errorf(server.ErrNotAllowed, "accounts can only be deleted by the server administrator")
	}
	un, pw := q.Child(NS, "username"), q.Child(NS, "password")
	if un == nil || pw == nil {
		return nil, server.Errorf(server.ErrBadRequest, "a password change needs <username/> and <password/> (XEP-0077 §3.3)")
	}
	if !h.sameUser(un.Text(), user) {
		return nil, server.Errorf(server.ErrBadRequest, "you can only change your own password")
	}
	password := pw.Text()
	switch {
	case password == "":
		return nil, server.Errorf(server.ErrNotAcceptable, "the password must not be empty")
	case len(password) > MaxPasswordBytes:
		return nil, server.Errorf(server.ErrNotAcceptable, "the password is too long")
	}
	err := account.SetPassword(ctx, h.s.Store(), user, password)
	if errors.Is(err, auth.ErrInvalidPassword) {
		return nil, server.Errorf(server.ErrNotAcceptable, "the password contains characters that are not allowed")
	}
	if err != nil {
		return nil, err
	}
	h.s.Logger().Info("password changed", "user", user)
	return nil, nil
}

// sameUser reports whether the <username/> of a request names user: either
// as a localpart or as the user's bare JID, compared after PRECIS
// normalisation (RFC 7622 §3.3).
func (h *handler) sameUser(given, user string) bool {
	domain := h.s.Domain().Domainpart()
	if i := strings.LastIndexByte(given, '@'); i >= 0 {
		d, err := jid.New("", given[i+1:], "")
		if err != nil || d.Domainpart() != domain {
			return false
		}
		given = given[:i]
	}
	j, err := jid.New(given, domain, "")
	return err == nil && j.Localpart() == user
}
