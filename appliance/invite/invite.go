// Package invite implements Hearth's invitations: an administrator (or a
// family member) creates a token that lets one person, or a group, register
// an account (XEP-0401 Easy User Onboarding, XEP-0445 Pre-Authenticated
// In-Band Registration). Registering through it creates the account with the
// invitation's role, puts inviter and invitee in each other's rosters with
// mutual subscription (XEP-0379 §3), and adds the invitee to the invitation's
// circles, whose members all have each other in their rosters and may share
// a group chat (circle.go).
//
// The same rules serve the XMPP registration (mod/register), the web
// registration fallback (webui) and the CLI (`hearth invite`). Tokens are
// secrets: they are stored (so the admin can list and share the links
// again) but never logged.
package invite

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/store"
	"mellium.im/xmpp/jid"
)

// Expiry bounds: an invitation is valid from one hour to four weeks.
const (
	MinExpiry     = time.Hour
	MaxExpiry     = 28 * 24 * time.Hour
	DefaultExpiry = 7 * 24 * time.Hour
)

// Limits on the free-text parts of an invitation.
const (
	// MaxNoteBytes bounds Options.Note.
	MaxNoteBytes = 500
	// MaxCircleBytes bounds a circle name (it becomes a roster group,
	// RFC 6121 §2.1.2.4).
	MaxCircleBytes = 100
	// MaxCircles bounds the circles of one invitation.
	MaxCircles = 10
	// MaxUses bounds Options.MaxUses of a group invitation.
	MaxUses = 1000
	// MaxPasswordBytes bounds a new password, as XEP-0077 password change.
	MaxPasswordBytes = 1024
)

// Token status errors, from Check and Redeem.
var (
	// ErrUnknown: no invitation has this token.
	ErrUnknown = errors.New("invite: unknown invitation")
	// ErrExpired: the invitation's validity has ended.
	ErrExpired = errors.New("invite: invitation expired")
	// ErrUsedUp: every use of the invitation is spent.
	ErrUsedUp = errors.New("invite: invitation already used")
	// ErrRevoked: an administrator revoked the invitation.
	ErrRevoked = errors.New("invite: invitation revoked")
)

// Registration errors, from Redeem and RegisterOpen.
var (
	// ErrInvalidUsername: the username is empty or not a valid JID
	// localpart (RFC 7622 §3.3, PRECIS UsernameCaseMapped).
	ErrInvalidUsername = errors.New("invite: invalid username")
	// ErrUsernameTaken: an account of that name exists.
	ErrUsernameTaken = errors.New("invite: username taken")
	// ErrInvalidPassword: empty, too long or not allowed by PRECIS
	// OpaqueString (RFC 8265 §4.2).
	ErrInvalidPassword = errors.New("invite: invalid password")
	// ErrClosed: registration without an invitation is not open.
	ErrClosed = errors.New("invite: registration is by invitation only")
)

// ErrInvalidOptions is returned (wrapped, with the reason) by Create.
var ErrInvalidOptions = errors.New("invite: invalid options")

// Roster makes two local accounts subscribe to each other (the XMPP server;
// *server.Server implements it with roster pushes, RFC 6121 §2.1.6).
type Roster interface {
	// AddRosterItemMutual gives a and b (localparts) a 'both'
	// subscription to each other, adding group to the items unless empty.
	AddRosterItemMutual(ctx context.Context, a, b, group string) error
}

// Config configures a Service.
type Config struct {
	// Store holds invitations, accounts and circles. Required.
	Store *store.Store
	// Domain is the XMPP domain served ("example.org"). Required.
	Domain string
	// Roster sets up mutual subscriptions after a registration; nil skips
	// them (the CLI, which registers nobody).
	Roster Roster
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per registration and invitation change
	// (never a token or password); nil means slog.Default().
	Logger *slog.Logger
	// Registered, if set, is called after every account registered
	// through Redeem or RegisterOpen, with its username (the web UI sends
	// the welcome message from it).
	Registered func(ctx context.Context, username string)
	// GroupChat is the backend of circles' group chats (XEP-0045 rooms
	// and XEP-0402 bookmarks, muc.CircleChats); nil means circles without
	// group chats (CreateCircle with chat returns ErrNoGroupChat).
	GroupChat GroupChat
}

// Service applies the invitation rules. It is safe for concurrent use.
type Service struct {
	st     *store.Store
	domain string
	roster Roster
	now    func() time.Time
	log    *slog.Logger
	// registered is Config.Registered.
	registered func(ctx context.Context, username string)
	// chat is Config.GroupChat.
	chat GroupChat
	// circleMu serializes the circle changes of this Service, so a room
	// is created, joined and destroyed in order.
	circleMu sync.Mutex
}

// New returns a Service for cfg. It panics without Store or with an
// invalid Domain (programming errors).
func New(cfg Config) *Service {
	if cfg.Store == nil {
		panic("invite: Config.Store is nil")
	}
	d, err := jid.New("", cfg.Domain, "")
	if err != nil || cfg.Domain == "" {
		panic(fmt.Sprintf("invite: invalid domain %q", cfg.Domain))
	}
	s := &Service{st: cfg.Store, domain: d.Domainpart(), roster: cfg.Roster, now: cfg.Now, log: cfg.Logger, registered: cfg.Registered, chat: cfg.GroupChat}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Domain returns the served domain.
func (s *Service) Domain() string { return s.domain }

// Options describe a new invitation.
type Options struct {
	// MaxUses is how many accounts may register with it: 1 (or 0 when
	// Reusable is false) for a personal invitation; for a group invitation
	// (Reusable) 0 means no limit until it expires, at most MaxUses.
	MaxUses int
	// Reusable makes it a group invitation.
	Reusable bool
	// Expires is the validity from now, MinExpiry to MaxExpiry; 0 means
	// DefaultExpiry.
	Expires time.Duration
	// Role is store.RoleLimited, store.RoleNormal (the default for "") or
	// store.RoleAdmin.
	Role string
	// Circles are joined by the accounts registered with it (created as
	// needed); each name 1 to MaxCircleBytes bytes of printable UTF-8.
	Circles []string
	// Note is free text for the administrator, at most MaxNoteBytes.
	Note string
	// Inviter is the localpart of the inviting account ("" for the
	// operator). The invitee gets a mutual subscription with it.
	Inviter string
}

// Create makes an invitation with a fresh random token (26 characters of
// base32, 130 bits). It returns ErrInvalidOptions (wrapped) for bad options,
// or store errors; an Inviter that has no account is an invalid option.
func (s *Service) Create(ctx context.Context, o Options) (store.Invite, error) {
	bad := func(format string, args ...any) (store.Invite, error) {
		return store.Invite{}, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	if o.Expires == 0 {
		o.Expires = DefaultExpiry
	}
	if o.Role == "" {
		o.Role = store.RoleNormal
	}
	maxUses := 1
	switch {
	case o.Expires < MinExpiry || o.Expires > MaxExpiry:
		return bad("expiry must be between 1 hour and 4 weeks")
	case o.Role != store.RoleLimited && o.Role != store.RoleNormal && o.Role != store.RoleAdmin:
		return bad("role must be limited, normal or admin")
	case len(o.Note) > MaxNoteBytes || !utf8.ValidString(o.Note):
		return bad("the note is too long")
	case o.Reusable && (o.MaxUses < 0 || o.MaxUses > MaxUses):
		return bad("a group invitation allows 0 (no limit) to %d uses", MaxUses)
	case !o.Reusable && o.MaxUses > 1:
		return bad("a personal invitation is used once; make it reusable for more")
	case len(o.Circles) > MaxCircles:
		return bad("at most %d circles", MaxCircles)
	}
	if o.Reusable {
		maxUses = o.MaxUses
	}
	var circles []string
	for _, c := range o.Circles {
		c = strings.TrimSpace(c)
		if err := ValidCircleName(c); err != nil {
			return bad("%v", err)
		}
		if !slices.Contains(circles, c) {
			circles = append(circles, c)
		}
	}
	if o.Inviter != "" {
		ok, err := s.st.AccountExists(ctx, o.Inviter)
		if err != nil {
			return store.Invite{}, err
		}
		if !ok {
			return bad("the inviter %q has no account", o.Inviter)
		}
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	inv := store.Invite{
		Created: now, Expires: now.Add(o.Expires), Inviter: o.Inviter, Role: o.Role,
		MaxUses: maxUses, Note: o.Note, Circles: circles,
	}
	for range 3 {
		inv.Token = rand.Text()
		err := s.st.CreateInvite(ctx, inv)
		if errors.Is(err, store.ErrExists) {
			continue // a collision of 130 random bits: try again
		}
		if err != nil {
			return store.Invite{}, err
		}
		s.log.Info("invitation created", "inviter", o.Inviter, "role", o.Role, "max_uses", maxUses, "expires", inv.Expires)
		return inv, nil
	}
	return store.Invite{}, errors.New("invite: could not generate a unique token")
}

// ValidCircleName checks a circle name: 1 to MaxCircleBytes bytes of UTF-8
// without control characters, not starting or ending with a space.
func ValidCircleName(name string) error {
	if name == "" || len(name) > MaxCircleBytes || !utf8.ValidString(name) || strings.TrimSpace(name) != name {
		return fmt.Errorf("a circle name has 1 to %d characters", MaxCircleBytes)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return errors.New("a circle name cannot contain control characters")
		}
	}
	return nil
}

// Status reports whether inv can be used at time at: nil, ErrRevoked,
// ErrExpired (at is not before Expires) or ErrUsedUp.
func Status(inv store.Invite, at time.Time) error {
	switch {
	case !inv.Revoked.IsZero():
		return ErrRevoked
	case !at.Before(inv.Expires):
		return ErrExpired
	case inv.MaxUses > 0 && inv.Uses >= inv.MaxUses:
		return ErrUsedUp
	}
	return nil
}

// Check returns the invitation with token if it can be used now, or
// ErrUnknown, ErrRevoked, ErrExpired or ErrUsedUp (with the invitation,
// except for ErrUnknown), or a store error. XEP-0445 §4: this is where the
// expiry is checked; a registration that follows on the same stream passes
// the time of this check to Redeem.
func (s *Service) Check(ctx context.Context, token string) (store.Invite, error) {
	if !plausibleToken(token) {
		return store.Invite{}, ErrUnknown
	}
	inv, err := s.st.Invite(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return store.Invite{}, ErrUnknown
	}
	if err != nil {
		return store.Invite{}, err
	}
	return inv, Status(inv, s.now())
}

// plausibleToken rejects what no token of ours looks like, before a
// database lookup.
func plausibleToken(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for _, r := range t {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Now returns the service clock's time (for Redeem's validAt).
func (s *Service) Now() time.Time { return s.now() }

// NormalizeUsername returns the PRECIS-normalised localpart (RFC 7622
// §3.3) for a username typed by a person (a bare JID of this domain is
// accepted too), or ErrInvalidUsername.
func (s *Service) NormalizeUsername(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if i := strings.LastIndexByte(raw, '@'); i >= 0 {
		d, err := jid.New("", raw[i+1:], "")
		if err != nil || d.Domainpart() != s.domain {
			return "", ErrInvalidUsername
		}
		raw = raw[:i]
	}
	if raw == "" {
		return "", ErrInvalidUsername
	}
	j, err := jid.New(raw, s.domain, "")
	if err != nil || j.Localpart() == "" {
		return "", ErrInvalidUsername
	}
	return j.Localpart(), nil
}

// keys derives the stored SCRAM keys, mapping password errors.
func keys(password string) ([]store.ScramKey, error) {
	if password == "" || len(password) > MaxPasswordBytes {
		return nil, ErrInvalidPassword
	}
	k, err := account.Keys(password)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPassword, err)
	}
	return k, nil
}

// Redeem registers the account username (as typed; normalised here) with
// password through the invitation token, whose validity (expiry) is judged
// at validAt, normally the time of Check on the same stream (XEP-0445 §4)
// or now; revocation and uses are judged at the moment of registration.
// The account gets the invitation's role and circles; then inviter and
// invitee, and the invitee and each member of its circles, get mutual
// subscriptions (XEP-0379 §3), and the invitee the membership and bookmark
// of its circles' group chats (failures there are logged, the account
// stays). It returns the normalised username and the invitation as it was
// before this use.
//
// Errors: ErrInvalidUsername, ErrInvalidPassword, ErrUnknown, ErrRevoked,
// ErrExpired, ErrUsedUp, ErrUsernameTaken, or store errors.
func (s *Service) Redeem(ctx context.Context, token, username, password string, validAt time.Time) (string, store.Invite, error) {
	user, err := s.NormalizeUsername(username)
	if err != nil {
		return "", store.Invite{}, err
	}
	k, err := keys(password)
	if err != nil {
		return "", store.Invite{}, err
	}
	if !plausibleToken(token) {
		return "", store.Invite{}, ErrUnknown
	}
	// Revocation and uses are the current state; the expiry is judged at
	// validAt.
	inv, err := s.st.RedeemInvite(ctx, token, user, k, func(inv store.Invite) error { return Status(inv, validAt) })
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", store.Invite{}, ErrUnknown
	case errors.Is(err, store.ErrExists):
		return "", inv, ErrUsernameTaken
	case err != nil:
		return "", inv, err
	}
	s.log.Info("account registered with an invitation", "user", user, "inviter", inv.Inviter, "role", inv.Role)
	s.connect(ctx, user, inv)
	if s.registered != nil {
		s.registered(ctx, user)
	}
	return user, inv, nil
}

// RegisterOpen registers username with password without an invitation,
// only while the operator has opened registration (store setting
// SettingRegistration = "open"). Errors: ErrClosed, ErrInvalidUsername,
// ErrInvalidPassword, ErrUsernameTaken, or store errors.
func (s *Service) RegisterOpen(ctx context.Context, username, password string) (string, error) {
	if !s.Open(ctx) {
		return "", ErrClosed
	}
	user, err := s.NormalizeUsername(username)
	if err != nil {
		return "", err
	}
	k, err := keys(password)
	if err != nil {
		return "", err
	}
	err = s.st.CreateAccount(ctx, user, k)
	if errors.Is(err, store.ErrExists) {
		return "", ErrUsernameTaken
	}
	if err != nil {
		return "", err
	}
	s.log.Info("account registered (open registration)", "user", user)
	if s.registered != nil {
		s.registered(ctx, user)
	}
	return user, nil
}

// Open reports whether registration without an invitation is open (the
// operator's setting; closed by default and on errors).
func (s *Service) Open(ctx context.Context) bool {
	v, err := s.st.Setting(ctx, store.SettingRegistration)
	return err == nil && v == "open"
}

// SetOpen opens or closes registration without an invitation.
func (s *Service) SetOpen(ctx context.Context, open bool) error {
	v := "invite"
	if open {
		v = "open"
	}
	return s.st.SetSetting(ctx, store.SettingRegistration, v)
}

// connect sets up the roster of a newly registered user: mutual
// subscriptions with the inviter, and with every member of its circles
// along with their group chats (connectCircle).
func (s *Service) connect(ctx context.Context, user string, inv store.Invite) {
	if s.roster != nil && inv.Inviter != "" && inv.Inviter != user {
		if err := s.roster.AddRosterItemMutual(ctx, inv.Inviter, user, ""); err != nil {
			s.log.Warn("subscribing inviter and invitee failed", "user", user, "inviter", inv.Inviter, "err", err)
		}
	}
	for _, c := range inv.Circles {
		s.connectCircle(ctx, c, user)
	}
}

// List returns every invitation, newest first.
func (s *Service) List(ctx context.Context) ([]store.Invite, error) { return s.st.Invites(ctx) }

// Revoke revokes the invitation with token: it can no longer be used.
// Returns ErrUnknown if there is none.
func (s *Service) Revoke(ctx context.Context, token string) error {
	if !plausibleToken(token) {
		return ErrUnknown
	}
	err := s.st.RevokeInvite(ctx, token, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return ErrUnknown
	}
	if err == nil {
		s.log.Info("invitation revoked")
	}
	return err
}

// Link returns the invitation's web landing page: base (like
// "https://example.org" or "https://example.org:5281", no trailing slash)
// + "/invite/" + token.
func Link(base, token string) string {
	return strings.TrimRight(base, "/") + "/invite/" + url.PathEscape(token)
}

// URI returns the registration URI of XEP-0401 §5 and XEP-0445 §2.2:
// "xmpp:DOMAIN?register;preauth=TOKEN".
func URI(domain, token string) string {
	return "xmpp:" + domain + "?register;preauth=" + url.QueryEscape(token)
}

// ParseExpiry parses a validity like "1h", "36h", "7d" or "4w" (also any
// time.ParseDuration string) and checks it against MinExpiry and MaxExpiry.
func ParseExpiry(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if n, unit := strings.TrimRight(s, "dw"), strings.TrimLeft(s, "0123456789"); (unit == "d" || unit == "w") && n != "" {
		v, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("invalid expiry %q", s)
		}
		d = time.Duration(v) * 24 * time.Hour
		if unit == "w" {
			d *= 7
		}
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("invalid expiry %q (use like 1h, 3d, 2w)", s)
		}
	}
	if d < MinExpiry || d > MaxExpiry {
		return 0, fmt.Errorf("expiry %q must be between 1h and 4w", s)
	}
	return d, nil
}
