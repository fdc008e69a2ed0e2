package muc

import (
	"context"
	"errors"
	"fmt"

	"github.com/hearthxmpp/hearth/appliance/store"
	"mellium.im/xmpp/jid"
)

// This file is the Go API for rooms managed by Hearth itself rather than by
// an occupant (a circle's group chat, see appliance/invite): create a room
// with its affiliations, change one affiliation, destroy the room. Every
// change goes through the live room under its lock and uses the same code
// as the muc#admin and muc#owner protocols, so occupants see exactly what
// an owner's request would show them.

// Errors of the room API.
var (
	// ErrRoomExists: a room with that localpart exists (also a locked room
	// an occupant is creating).
	ErrRoomExists = errors.New("muc: room exists")
	// ErrRoomNotFound: there is no room with that localpart.
	ErrRoomNotFound = errors.New("muc: no such room")
)

// Affiliation names for the room API (XEP-0045 §5.2).
const (
	AffiliationOwner   = affOwner
	AffiliationAdmin   = affAdmin
	AffiliationMember  = affMember
	AffiliationNone    = affNone
	AffiliationOutcast = affOutcast
)

// RoomJID returns the bare JID localpart@domain of the service's room
// localpart, normalised (RFC 7622 §3.3), or an error if localpart is empty
// or not a valid JID localpart.
func (svc *Service) RoomJID(localpart string) (jid.JID, error) {
	if localpart == "" {
		return jid.JID{}, errors.New("muc: empty room name")
	}
	j, err := jid.New(localpart, svc.domain.Domainpart(), "")
	if err != nil {
		return jid.JID{}, fmt.Errorf("muc: invalid room name %q: %w", localpart, err)
	}
	return j, nil
}

// CreateRoom creates the room localpart@domain, unlocked (no XEP-0045
// §10.1 configuration step) and stored, with the configuration of a
// family's private group chat: persistent, members-only, non-anonymous
// (muc#roomconfig_whois anyone), archived (XEP-0313), hidden from the room
// list, without password or moderation, named title
// (muc#roomconfig_roomname); occupants may change the subject but may not
// invite (membership is the caller's business, e.g. a circle's). Other
// settings come from the service defaults.
//
// affiliations maps bare JIDs (of any domain; normalised here) to
// AffiliationOwner, AffiliationAdmin, AffiliationMember or
// AffiliationOutcast. A room without owner is allowed: nobody can then
// reconfigure or destroy it over XMPP, only through this API.
//
// It returns the room's bare JID. Errors: ErrRoomExists, a plain error for
// an invalid localpart, JID or affiliation, or store errors (the room is
// not created then).
func (svc *Service) CreateRoom(ctx context.Context, localpart, title string, affiliations map[string]string) (jid.JID, error) {
	rj, err := svc.RoomJID(localpart)
	if err != nil {
		return jid.JID{}, err
	}
	affs := make(map[string]affiliation, len(affiliations))
	for j, a := range affiliations {
		bare, err := bareJID(j)
		if err != nil {
			return jid.JID{}, err
		}
		switch a {
		case affOwner, affAdmin, affMember, affOutcast:
		default:
			return jid.JID{}, fmt.Errorf("muc: invalid affiliation %q", a)
		}
		affs[bare] = affiliation{aff: a}
	}
	if err := svc.load(ctx); err != nil {
		return jid.JID{}, err
	}
	cfg := svc.defaults
	cfg.Name = title
	cfg.Persistent, cfg.MembersOnly, cfg.Archived = true, true, true
	cfg.WhoIs = WhoIsAnyone
	cfg.Public, cfg.Moderated, cfg.AllowInvites, cfg.ChangeSubject = false, false, false, true
	cfg.Password = ""

	name := rj.Localpart()
	svc.mu.Lock()
	if svc.rooms[name] != nil {
		svc.mu.Unlock()
		return jid.JID{}, fmt.Errorf("%w: %s", ErrRoomExists, rj)
	}
	r := svc.newRoom(name, cfg)
	r.affs = affs
	r.mu.Lock()
	svc.rooms[name] = r // entering it waits for the lock, and finds it saved
	svc.mu.Unlock()
	if err := r.save(ctx); err != nil {
		r.gone = true
		svc.forget(r)
		r.mu.Unlock()
		return jid.JID{}, err
	}
	r.mu.Unlock()
	svc.s.Logger().Info("muc: room created", "room", rj.String(), "affiliations", len(affs))
	return rj, nil
}

// SetAffiliation gives the bare JID user the affiliation aff
// (AffiliationOwner, AffiliationAdmin, AffiliationMember, AffiliationNone
// to remove it, or AffiliationOutcast) in the room localpart, with an
// optional reason, as an owner's muc#admin request would (XEP-0045 §9.3
// granting membership, §9.4 revoking it, §9.1 ban, §10.3 and §10.6): it is
// stored, the occupants with that bare JID get their new affiliation and
// role in a presence broadcast to the room, are removed if banned (301) or
// no longer members of the members-only room (321), and someone not in the
// room is told by a message (status 101). Unlike the protocol, it may take
// the last owner's affiliation (the service acts, not an owner).
//
// Errors: ErrRoomNotFound, a plain error for an invalid JID or affiliation,
// or store errors (nothing changes then).
func (svc *Service) SetAffiliation(ctx context.Context, localpart, user, aff, reason string) error {
	bare, err := bareJID(user)
	if err != nil {
		return err
	}
	switch aff {
	case affOwner, affAdmin, affMember, affNone, affOutcast:
	default:
		return fmt.Errorf("muc: invalid affiliation %q", aff)
	}
	r, err := svc.lockLiveRoom(ctx, localpart)
	if err != nil {
		return err
	}
	if r.saved {
		err := svc.s.Store().SetMUCAffiliations(ctx, r.name,
			[]store.MUCAffiliation{{JID: bare, Affiliation: aff, Reason: reason}})
		if err != nil {
			r.mu.Unlock()
			return err
		}
	}
	r.setAffiliation(ctx, change{bare: jid.MustParse(bare), aff: aff, reason: reason})
	r.flush(ctx)
	return nil
}

// Affiliations returns the affiliations of the room localpart by bare JID
// (XEP-0045 §5.2; no entry means none). Errors: ErrRoomNotFound, or store
// errors.
func (svc *Service) Affiliations(ctx context.Context, localpart string) (map[string]string, error) {
	r, err := svc.lockLiveRoom(ctx, localpart)
	if err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.affs))
	for j, a := range r.affs {
		out[j] = a.aff
	}
	return out, nil
}

// DestroyRoom destroys the room localpart as an owner's muc#owner
// <destroy/> would (XEP-0045 §10.9): every occupant gets unavailable
// presence with <destroy/> and reason (if not ""), and the room, its
// affiliations and its archive are deleted. Errors: ErrRoomNotFound, or
// store errors from loading the rooms (a failed deletion is logged).
func (svc *Service) DestroyRoom(ctx context.Context, localpart, reason string) error {
	r, err := svc.lockLiveRoom(ctx, localpart)
	if err != nil {
		return err
	}
	r.destroy(ctx, "", reason, "")
	r.flush(ctx)
	svc.s.Logger().Info("muc: room destroyed", "room", r.jid.String())
	return nil
}

// lockLiveRoom loads the rooms if needed and returns the room localpart
// locked, or ErrRoomNotFound.
func (svc *Service) lockLiveRoom(ctx context.Context, localpart string) (*room, error) {
	rj, err := svc.RoomJID(localpart)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRoomNotFound, err)
	}
	if err := svc.load(ctx); err != nil {
		return nil, err
	}
	r := svc.lockRoom(rj.Localpart())
	if r == nil {
		return nil, fmt.Errorf("%w: %s", ErrRoomNotFound, rj)
	}
	return r, nil
}

// bareJID parses s and returns its bare JID as a string.
func bareJID(s string) (string, error) {
	j, err := jid.Parse(s)
	if err != nil || j.Domainpart() == "" {
		return "", fmt.Errorf("muc: invalid JID %q", s)
	}
	return j.Bare().String(), nil
}

// ForgetUser takes every affiliation of the bare JID user away, in every
// room (as SetAffiliation with AffiliationNone: occupants see the change,
// XEP-0045 §9.4, §9.7), for a local account that was deleted: a later
// account of the same name is another person and must not inherit its
// memberships, ownerships or bans. A room may be left without an owner;
// administrators can still destroy it. It returns how many rooms changed.
// Errors: a plain error for an invalid JID, or the first store error (the
// other rooms are still cleaned).
func (svc *Service) ForgetUser(ctx context.Context, user string) (int, error) {
	bare, err := bareJID(user)
	if err != nil {
		return 0, err
	}
	if err := svc.load(ctx); err != nil {
		return 0, err
	}
	var first error
	n := 0
	for _, lr := range svc.allRooms() {
		lr.mu.Lock()
		_, has := lr.affs[bare]
		name := lr.name
		lr.mu.Unlock()
		if !has {
			continue
		}
		err := svc.SetAffiliation(ctx, name, bare, affNone, "account deleted")
		switch {
		case errors.Is(err, ErrRoomNotFound):
		case err != nil && first == nil:
			first = err
		case err == nil:
			n++
		}
	}
	return n, first
}
