package webui

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"mellium.im/xmpp/stream"
)

// The administrator's operations below are shared by the web pages and the
// operator's command line (through the control socket): one
// implementation, each logging who did what ("by": an administrator's
// localpart, or whatever names the operator, e.g. "cli").

// ErrLastAdmin reports that a change would leave no administrator who can
// log in: demoting or deleting the last one. It is [store.ErrLastAdmin]
// itself, so errors.Is matches either name.
var ErrLastAdmin = store.ErrLastAdmin

// ErrInvalidRole reports a role other than store.RoleLimited,
// store.RoleNormal and store.RoleAdmin.
var ErrInvalidRole = errors.New("webui: unknown role")

// ErrNoServer reports that an operation needs the running XMPP server
// (Config.Server) and there is none.
var ErrNoServer = errors.New("webui: the chat server is not running")

// ErrInvalidAnnouncement reports an announcement that is empty, longer
// than MaxAnnouncementBytes (its subject: MaxSubjectBytes, one line), or
// has control characters other than line breaks and tabs.
var ErrInvalidAnnouncement = errors.New("webui: invalid announcement")

// Announce sends text to every account as a normal message (RFC 6121
// §5.2.2, type absent) from the server's domain to its bare JID: at once
// to its available devices, or kept in offline storage (XEP-0160) for
// later. Accounts marked for deletion are left out. text is trimmed and
// its line breaks unified (CRLF to LF). It returns how many accounts it
// was sent to. Errors: [ErrNoServer], [ErrInvalidAnnouncement] (wrapped),
// or a store error.
func (u *UI) Announce(ctx context.Context, text, by string) (sent int, err error) {
	return u.announceTo(ctx, "", text, by)
}

// announceTo is Announce with an optional subject (RFC 6121 §5.2.4), as
// the web page sends it.
func (u *UI) announceTo(ctx context.Context, subject, text, by string) (int, error) {
	subject, text = strings.TrimSpace(subject), normalizeText(text)
	switch {
	case u.cfg.Server == nil:
		return 0, ErrNoServer
	case text == "":
		return 0, fmt.Errorf("%w: empty", ErrInvalidAnnouncement)
	case !validText(text, MaxAnnouncementBytes) || !validText(subject, MaxSubjectBytes) || strings.ContainsAny(subject, "\r\n"):
		return 0, fmt.Errorf("%w: too long or has characters not allowed", ErrInvalidAnnouncement)
	}
	accts, err := u.cfg.Store.Accounts(ctx)
	var dels []store.AccountDeletion
	if err == nil {
		dels, err = u.cfg.Store.AccountDeletions(ctx)
	}
	if err != nil {
		return 0, err
	}
	locked := map[string]bool{}
	for _, d := range dels {
		locked[d.Username] = true
	}
	n := 0
	for _, a := range accts {
		if locked[a.Username] {
			continue
		}
		u.sendNotice(ctx, a.Username, subject, text, "announce")
		n++
	}
	u.log.Info("web: announcement sent", "accounts", n, "by", by)
	return n, nil
}

// DeleteAccount deletes the account username (a localpart). Unless now is
// set or Config.DeletionGrace is 0, it is only locked (no login; SCRAM
// keys held aside, reset links dropped) and deleted by the background job
// (Start) at the returned time deleteOn, until when an administrator can
// undo it (Undelete); otherwise it is deleted at once and deleteOn is the
// zero time. Either way its live XMPP streams end (stream error
// not-authorized, RFC 6120 §4.9.3.12) and its web sessions end; a deletion
// removes all its data and, with Config.UploadDir, its uploaded files
// (XEP-0363). With now set, an account already marked is deleted at once.
//
// The last-administrator check is race-free: the account is first marked
// (with its grace period, or due at once with now) by
// store.MarkAccountDeletionKeepAdmin, which checks in the same
// transaction; two administrators deleting each other at the same instant
// cannot both succeed. A deletion at once that then fails (a file or
// store error) leaves the account locked and due, and the background job
// retries it.
//
// Errors: [store.ErrNotFound] if there is no such account, [store.ErrExists]
// if it is already marked and now is not set, [ErrLastAdmin] if it is
// the last administrator who can log in (an administrator already marked
// for deletion does not count), or a store or file error.
func (u *UI) DeleteAccount(ctx context.Context, username, by string, now bool) (deleteOn time.Time, err error) {
	t := u.now()
	atOnce := now || u.cfg.DeletionGrace <= 0
	due := t
	if !atOnce {
		due = t.Add(u.cfg.DeletionGrace)
	}
	err = u.cfg.Store.MarkAccountDeletionKeepAdmin(ctx, username, by, t, due)
	if errors.Is(err, store.ErrExists) && atOnce {
		err = nil // already marked: delete it at once below
	}
	if err != nil {
		return time.Time{}, err
	}
	if atOnce {
		return time.Time{}, u.deleteAccountNow(ctx, username, by)
	}
	if u.cfg.Server != nil {
		u.cfg.Server.DisconnectUser(username, stream.NotAuthorized, "account deleted")
	}
	u.endSessions(username, "")
	u.log.Info("web: account marked for deletion", "user", username, "by", by, "due", due)
	return due, nil
}

// Undelete cancels the pending deletion of the account username (a
// localpart) marked by DeleteAccount and unlocks it: its SCRAM keys come
// back (store.CancelAccountDeletion), so its password works again, unless
// the operator set a new one meanwhile. Errors: [store.ErrNotFound] if
// the account is not marked for deletion (or does not exist), or a store
// error.
func (u *UI) Undelete(ctx context.Context, username, by string) error {
	if err := u.cfg.Store.CancelAccountDeletion(ctx, username); err != nil {
		return err
	}
	u.log.Info("web: account deletion cancelled", "user", username, "by", by)
	return nil
}

// ResetLink makes a one-time password reset link for the account
// username, valid for PasswordResetLifetime: link is its public address
// (Config.BaseURL + "/reset/" + token), expires its end. Only the
// SHA-256 digest of the token is stored; the link cannot be shown again.
// Opening it lets anyone holding it set the account's password once (the
// account's streams are then reset, RFC 6120 §4.9.3.16). Errors:
// [store.ErrNotFound] if there is no such account or it is marked for
// deletion, or a store error.
func (u *UI) ResetLink(ctx context.Context, username, by string) (link string, expires time.Time, err error) {
	token := rand.Text()
	now := u.now()
	expires = now.Add(PasswordResetLifetime)
	err = u.cfg.Store.CreatePasswordReset(ctx, store.PasswordReset{
		Digest: tokenDigest(token), Username: username, Created: now, Expires: expires, CreatedBy: by,
	})
	if err != nil {
		return "", time.Time{}, err
	}
	u.log.Info("web: password reset link created", "user", username, "by", by)
	return u.resetLink(token), expires, nil
}

// SetRole gives the account username the role store.RoleLimited (may
// chat, not invite), store.RoleNormal or store.RoleAdmin (the admin
// pages). Taking the role RoleAdmin from the last administrator who can
// log in is refused in the same store transaction that would change it
// (race-free). An administrator's open admin pages stop working at once
// after a demotion (the role is checked on every request). Errors:
// [ErrInvalidRole], [store.ErrNotFound] if there is no such account,
// [ErrLastAdmin], or a store error.
func (u *UI) SetRole(ctx context.Context, username, role, by string) error {
	switch role {
	case store.RoleLimited, store.RoleNormal, store.RoleAdmin:
	default:
		return fmt.Errorf("%w %q", ErrInvalidRole, role)
	}
	old, err := u.cfg.Store.SetRoleKeepAdmin(ctx, username, role)
	if err != nil {
		return err
	}
	if old != role {
		u.log.Info("web: role changed", "user", username, "from", old, "to", role, "by", by)
	}
	return nil
}
