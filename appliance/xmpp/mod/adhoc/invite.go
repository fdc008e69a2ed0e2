package adhoc

import (
	"context"
	"errors"
	"net/url"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// Invitation command nodes (XEP-0401 §3, §5.1, §5.4; Prosody's
// mod_invites_adhoc uses the same).
const (
	// NodeInvite creates a user invitation: the invitee registers here (or
	// adds the inviter from an existing account) and gets a mutual
	// subscription with the inviter.
	NodeInvite = "urn:xmpp:invite#invite"
	// NodeCreateAccount creates an account invitation, for administrators.
	NodeCreateAccount = "urn:xmpp:invite#create-account"
	// InvitationFormType is the FORM_TYPE of the result form (XEP-0401
	// §8, XEP-0068).
	InvitationFormType = "urn:xmpp:invite#invitation"
)

// Invites creates invitations on behalf of an account with that account's
// role rules; *invite.Service implements it.
type Invites interface {
	// CreateFor returns errors matching invite.ErrNotAllowed (the role
	// does not allow it) and invite.ErrInvalidOptions (bad options), see
	// invite.Service.CreateFor.
	CreateFor(ctx context.Context, inviter string, o invite.Options) (store.Invite, error)
}

// InviteConfig configures AddInviteCommands.
type InviteConfig struct {
	// Invites creates the invitations. Required.
	Invites Invites
	// BaseURL is the public HTTPS origin of the invitation landing pages
	// ("https://example.org"); the result's landing-url is
	// invite.Link(BaseURL, token). "" leaves landing-url out (XEP-0401
	// §5.1 makes it optional).
	BaseURL string
}

// AddInviteCommands adds the XEP-0401 invitation commands:
//
//   - NodeInvite "Invite someone", for accounts whose role is normal or
//     admin (limited accounts neither see nor run it): it completes at once
//     (XEP-0401 §5.1) with a result form of FORM_TYPE
//     urn:xmpp:invite#invitation holding 'uri'
//     (xmpp:USER@DOMAIN?roster;preauth=TOKEN;ibr=y, as XEP-0401 §5.1 and
//     Prosody), 'landing-url' (invite.Link) and 'expire' (XEP-0082
//     DateTime). The invitation is a personal, single-use one with the
//     default role (normal) and validity (invite.DefaultExpiry).
//   - NodeCreateAccount "Create an account invitation", for
//     administrators: a form asking for the new account's role (limited,
//     normal or admin; default normal), then the same result with 'uri'
//     xmpp:DOMAIN?register;preauth=TOKEN (invite.URI, XEP-0401 §5.4).
//
// Both go through Invites.CreateFor with the requester as inviter, so the
// role rules apply at execution too: invite.ErrNotAllowed becomes
// forbidden, invite.ErrInvalidOptions bad-request/bad-payload, each with the
// reason as text. It panics without cfg.Invites.
func (svc *Service) AddInviteCommands(cfg InviteConfig) {
	if cfg.Invites == nil {
		panic("adhoc: InviteConfig.Invites is nil")
	}
	ic := &inviteCommands{svc: svc, cfg: cfg}
	svc.Add(Command{Node: NodeInvite, Name: "Invite someone", Allowed: ic.mayInvite, Execute: ic.invite})
	svc.Add(Command{Node: NodeCreateAccount, Name: "Create an account invitation", Allowed: ic.isAdmin, Execute: ic.createAccount})
}

type inviteCommands struct {
	svc *Service
	cfg InviteConfig
}

func (ic *inviteCommands) role(ctx context.Context, username string) string {
	r, err := ic.svc.s.Store().Role(ctx, username)
	if err != nil {
		return ""
	}
	return r
}

// mayInvite: normal accounts and administrators (invite.Service.CreateFor).
func (ic *inviteCommands) mayInvite(ctx context.Context, username string) bool {
	r := ic.role(ctx, username)
	return r == store.RoleNormal || r == store.RoleAdmin
}

func (ic *inviteCommands) isAdmin(ctx context.Context, username string) bool {
	return ic.role(ctx, username) == store.RoleAdmin
}

// invite runs NodeInvite (XEP-0401 §5.1): one stage, completed.
func (ic *inviteCommands) invite(ctx context.Context, req *Request) (*Response, error) {
	inv, err := ic.create(ctx, req.Username, invite.Options{})
	if err != nil {
		return nil, err
	}
	jid := req.Username + "@" + ic.svc.s.Domain().String()
	uri := "xmpp:" + jid + "?roster;preauth=" + url.QueryEscape(inv.Token) + ";ibr=y"
	return &Response{Status: StatusCompleted, Payload: []*xmlel.Element{ic.result(inv, uri)}}, nil
}

// Roles offered by the create-account form.
var roleOptions = []string{
	"Limited: can chat with the family, cannot invite", store.RoleLimited,
	"Family member", store.RoleNormal,
	"Administrator", store.RoleAdmin,
}

// createAccount runs NodeCreateAccount (XEP-0401 §5.4): a form for the
// role, then the result. A form submitted with the first request is
// accepted at once.
func (ic *inviteCommands) createAccount(ctx context.Context, req *Request) (*Response, error) {
	if req.Form != nil && req.Form.Get("type") == FormCancel {
		// XEP-0004 §3.1: the user cancelled the form.
		return &Response{Status: StatusCanceled}, nil
	}
	if req.Stage > 0 && (req.Form == nil || req.Form.Get("type") != FormSubmit) {
		return nil, BadPayload("submit the form (XEP-0004 type 'submit') to create the invitation")
	}
	if req.Stage == 0 && (req.Form == nil || req.Form.Get("type") != FormSubmit) {
		form := NewForm(FormForm, "Create an account invitation",
			"Choose what the new account may do. Share the link you get next with the person you invite.")
		form.Add(WithOptions(Field("role", "list-single", "Role", store.RoleNormal), roleOptions...))
		return &Response{Status: StatusExecuting, Actions: []string{ActionComplete}, Default: ActionComplete,
			Payload: []*xmlel.Element{form}}, nil
	}
	role := FormValue(req.Form, "role")
	switch role {
	case "":
		role = store.RoleNormal
	case store.RoleLimited, store.RoleNormal, store.RoleAdmin:
	default:
		return nil, BadPayload("the role must be limited, normal or admin")
	}
	inv, err := ic.create(ctx, req.Username, invite.Options{Role: role})
	if err != nil {
		return nil, err
	}
	uri := invite.URI(ic.svc.s.Domain().String(), inv.Token)
	return &Response{Status: StatusCompleted, Payload: []*xmlel.Element{ic.result(inv, uri)}}, nil
}

// create calls CreateFor and maps its errors to stanza errors.
func (ic *inviteCommands) create(ctx context.Context, user string, o invite.Options) (store.Invite, error) {
	inv, err := ic.cfg.Invites.CreateFor(ctx, user, o)
	switch {
	case err == nil:
		return inv, nil
	case errors.Is(err, invite.ErrNotAllowed):
		return inv, server.Errorf(server.ErrForbidden, invite.Reason(err))
	case errors.Is(err, invite.ErrInvalidOptions):
		return inv, BadPayload(invite.Reason(err))
	default:
		return inv, err
	}
}

// result is the XEP-0401 §5.1 result form.
func (ic *inviteCommands) result(inv store.Invite, uri string) *xmlel.Element {
	x := NewForm(FormResult, "Your invitation has been created", "")
	x.Add(Hidden("FORM_TYPE", InvitationFormType))
	x.Add(Field("uri", "text-single", "Invitation link for chat apps", uri))
	if ic.cfg.BaseURL != "" {
		x.Add(Field("landing-url", "text-single", "Invitation web page (share this link)", invite.Link(ic.cfg.BaseURL, inv.Token)))
	}
	x.Add(Field("expire", "text-single", "Valid until", inv.Expires.UTC().Format("2006-01-02T15:04:05Z")))
	return x
}
