package invite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/store"
)

// ErrNotAllowed is returned (wrapped, with a reason meant for the user) by
// CreateFor when the inviter's role does not allow the invitation asked
// for. Reason extracts the reason.
var ErrNotAllowed = errors.New("invite: not allowed")

// CreateFor makes an invitation on behalf of the account inviter (a
// localpart), as a member inviting their own family from their account
// page or chat app (XEP-0401 §3: the inviter and the invitee get mutual
// subscriptions). The rules follow inviter's role (store.Role), like
// Snikket's:
//
//   - store.RoleLimited: may not invite at all.
//   - store.RoleNormal: a personal (single-use) or group invitation whose
//     Role is store.RoleNormal (the default) or store.RoleLimited, never
//     store.RoleAdmin; Expires within MinExpiry..MaxExpiry (0 means
//     DefaultExpiry); Circles only among the circles inviter is a member
//     of (no new circles).
//   - store.RoleAdmin: anything Create accepts.
//
// For every role, Options.Inviter is set to inviter, and an account marked
// for deletion (locked) may not invite. The other options are checked as
// by Create.
//
// Errors: ErrNotAllowed (wrapped with the reason: unknown account, marked
// for deletion, limited role, administrator role asked, circle not the
// inviter's), ErrInvalidOptions (wrapped) as Create, or store errors.
func (s *Service) CreateFor(ctx context.Context, inviter string, o Options) (store.Invite, error) {
	notAllowed := func(format string, args ...any) (store.Invite, error) {
		return store.Invite{}, fmt.Errorf("%w: %s", ErrNotAllowed, fmt.Sprintf(format, args...))
	}
	if inviter == "" {
		return notAllowed("an invitation needs an inviting account")
	}
	role, err := s.st.Role(ctx, inviter)
	if errors.Is(err, store.ErrNotFound) {
		return notAllowed("the account %q does not exist", inviter)
	}
	if err != nil {
		return store.Invite{}, err
	}
	if marked, err := s.markedForDeletion(ctx, inviter); err != nil {
		return store.Invite{}, err
	} else if marked {
		return notAllowed("your account is being deleted, so it cannot invite anyone")
	}
	o.Inviter = inviter
	switch role {
	case store.RoleAdmin:
		return s.Create(ctx, o)
	case store.RoleNormal:
	default: // store.RoleLimited, and any role added later
		return notAllowed("your account cannot invite others; ask an administrator to invite them")
	}
	if o.Role == store.RoleAdmin {
		return notAllowed("only administrators can invite administrators")
	}
	var mine []string
	for _, c := range o.Circles {
		c = strings.TrimSpace(c)
		if slices.Contains(mine, c) {
			continue
		}
		if ValidCircleName(c) != nil {
			continue // Create reports it as an invalid option
		}
		members, err := s.st.CircleMembers(ctx, c)
		if err != nil {
			return store.Invite{}, err
		}
		if !slices.Contains(members, inviter) {
			return notAllowed("you can only invite people into circles you belong to, and you are not in %q", c)
		}
		mine = append(mine, c)
	}
	return s.Create(ctx, o)
}

// ListFor returns the invitations inviter (a localpart) created, newest
// first, whatever their status (see Status).
func (s *Service) ListFor(ctx context.Context, inviter string) ([]store.Invite, error) {
	all, err := s.st.Invites(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.Invite
	for _, inv := range all {
		if inviter != "" && inv.Inviter == inviter {
			out = append(out, inv)
		}
	}
	return out, nil
}

// RevokeFor revokes the invitation with token on behalf of the account
// inviter, who must have created it (whatever inviter's role now: taking
// back one's own invitation is always allowed). It returns ErrUnknown both
// when there is no such invitation and when it is someone else's, so that
// the existence of others' tokens is not revealed; or store errors.
func (s *Service) RevokeFor(ctx context.Context, inviter, token string) error {
	if inviter == "" || !plausibleToken(token) {
		return ErrUnknown
	}
	inv, err := s.st.Invite(ctx, token)
	if errors.Is(err, store.ErrNotFound) || err == nil && inv.Inviter != inviter {
		return ErrUnknown
	}
	if err != nil {
		return err
	}
	return s.Revoke(ctx, token)
}

// Reason returns the explanation carried by an error wrapping
// ErrNotAllowed or ErrInvalidOptions, phrased for the person who asked
// ("only administrators can invite administrators"), or "" for any other
// error.
func Reason(err error) string {
	for _, base := range []error{ErrNotAllowed, ErrInvalidOptions} {
		if errors.Is(err, base) {
			r := strings.TrimPrefix(err.Error(), base.Error())
			return strings.TrimPrefix(r, ": ")
		}
	}
	return ""
}

// markedForDeletion reports whether username is marked for deletion (its
// account locked until the deletion job removes it).
func (s *Service) markedForDeletion(ctx context.Context, username string) (bool, error) {
	dels, err := s.st.AccountDeletions(ctx)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(dels, func(d store.AccountDeletion) bool { return d.Username == username }), nil
}
