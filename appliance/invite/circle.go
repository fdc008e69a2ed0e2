package invite

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hearthxmpp/hearth/appliance/store"
)

// Circles are groups of accounts whose members have each other in their
// rosters with mutual subscriptions, in the roster group named after the
// circle (a shared roster, like Snikket's circles), and optionally share a
// group chat: a members-only XEP-0045 room whose member list follows the
// circle and which every member has as an autojoin XEP-0402 bookmark.

// ErrNoGroupChat is returned by CreateCircle with chat, by DeleteCircle
// for a circle with a group chat and by SetCircleChat for a change, when
// the Service has no GroupChat backend (Config.GroupChat is nil).
var ErrNoGroupChat = errors.New("invite: group chats are not available here")

// GroupChat is the group chat backend of circles: the XEP-0045 service and
// the members' XEP-0402 bookmarks. muc.CircleChats implements it.
// Accounts are local usernames (localparts); rooms are bare room JIDs as
// CreateRoom returned them.
type GroupChat interface {
	// CreateRoom creates a persistent, members-only, non-anonymous room
	// titled circle, with no members yet, at an unused address derived
	// from the circle name, and returns its bare JID.
	CreateRoom(ctx context.Context, circle string) (room string, err error)
	// DestroyRoom destroys room (XEP-0045 §10.9: its occupants are told);
	// a room that no longer exists is no error.
	DestroyRoom(ctx context.Context, room string) error
	// AddMember gives user the member affiliation in room (XEP-0045 §9.3)
	// and an autojoin bookmark of it named circle (XEP-0402).
	AddMember(ctx context.Context, room, circle, user string) error
	// RemoveMember takes user's affiliation in room (XEP-0045 §9.4; none
	// if the room no longer exists) and its bookmark of room away.
	RemoveMember(ctx context.Context, room, user string) error
}

// Circles returns every circle with its group chat room ("" for none) and
// members, sorted by name.
func (s *Service) Circles(ctx context.Context) ([]store.Circle, error) { return s.st.Circles(ctx) }

// CreateCircle creates the empty circle name (see ValidCircleName). With
// chat, it also gets a group chat (GroupChat.CreateRoom: a members-only
// room at a free address derived from the name, on the group chat
// service's domain), recorded as the circle's Room; its members will be
// the circle's members. The room has no owner: it is managed through the
// circle, not over XMPP.
//
// Errors: a plain error for an invalid name, ErrNoGroupChat (chat without
// a backend), an error matching store.ErrExists if a circle of that name
// exists, the backend's error (nothing is created then), or store errors.
func (s *Service) CreateCircle(ctx context.Context, name string, chat bool) error {
	if err := ValidCircleName(name); err != nil {
		return err
	}
	if chat && s.chat == nil {
		return ErrNoGroupChat
	}
	s.circleMu.Lock()
	defer s.circleMu.Unlock()
	if _, err := s.st.Circle(ctx, name); err == nil {
		return fmt.Errorf("%w: circle %q", store.ErrExists, name)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	room := ""
	if chat {
		var err error
		if room, err = s.createRoom(ctx, name); err != nil {
			return err
		}
	}
	if err := s.st.CreateCircle(ctx, name, room); err != nil {
		// Created meanwhile by an invitation's redemption.
		if room != "" {
			s.dropRoom(ctx, name, room)
		}
		return err
	}
	s.log.Info("circle created", "circle", name, "room", room)
	return nil
}

// DeleteCircle deletes the circle name: its group chat room, if any, is
// destroyed (its occupants get the XEP-0045 §10.9 destroy notice) and
// every member's bookmark of it removed; the memberships go, and pending
// invitations no longer add their invitees to it.
//
// The members keep each other in their rosters (the items of the roster
// group named after the circle stay, subscriptions included): in a family
// the people stay in touch when a group is reorganised, and taking
// contacts away silently would surprise more than keeping them.
//
// Errors: an error matching store.ErrNotFound for an unknown circle,
// ErrNoGroupChat if it has a room but the Service has no GroupChat
// backend, the backend's error from destroying the room (nothing is
// deleted then), or store errors.
func (s *Service) DeleteCircle(ctx context.Context, name string) error {
	s.circleMu.Lock()
	defer s.circleMu.Unlock()
	c, err := s.st.Circle(ctx, name)
	if err != nil {
		return err
	}
	if c.Room != "" {
		if s.chat == nil {
			return ErrNoGroupChat
		}
		if err := s.closeChat(ctx, c); err != nil {
			return err
		}
	}
	if err := s.st.DeleteCircle(ctx, name); err != nil {
		return err
	}
	s.log.Info("circle deleted", "circle", name, "room", c.Room, "members", len(c.Members))
	return nil
}

// SetCircleChat gives the existing circle name a group chat (on) or
// closes it (off), for a circle made by an invitation or created without
// one, or whose chat is no longer wanted.
//
// On: the room is created as CreateCircle with chat makes it
// (GroupChat.CreateRoom), recorded as the circle's Room, then every
// current member gets the member affiliation (XEP-0045 §9.3) and an
// autojoin XEP-0402 bookmark of it (failures there are logged, like
// JoinCircle's). Off: the room is destroyed (its occupants get the
// XEP-0045 §10.9 destroy notice, its archive goes), every member's
// affiliation and bookmark are removed (failures logged) and the record
// cleared. The circle, its members and their rosters stay either way.
//
// A circle already in the asked state is no error and changes nothing.
// Errors: an error matching store.ErrNotFound for an unknown circle,
// ErrNoGroupChat if the Service has no GroupChat backend, the backend's
// error from creating or destroying the room (nothing changes then), or
// store errors.
func (s *Service) SetCircleChat(ctx context.Context, name string, on bool) error {
	s.circleMu.Lock()
	defer s.circleMu.Unlock()
	c, err := s.st.Circle(ctx, name)
	if err != nil {
		return err
	}
	if (c.Room != "") == on {
		return nil
	}
	if s.chat == nil {
		return ErrNoGroupChat
	}
	if !on {
		if err := s.closeChat(ctx, c); err != nil {
			return err
		}
		if err := s.st.SetCircleRoom(ctx, name, ""); err != nil {
			return err
		}
		s.log.Info("circle group chat closed", "circle", name, "room", c.Room, "members", len(c.Members))
		// A redemption adding a member meanwhile (redemptions do not
		// take circleMu) may have given it a bookmark before the room
		// was destroyed.
		if now, err := s.st.CircleMembers(ctx, name); err == nil {
			for _, m := range now {
				if !slices.Contains(c.Members, m) {
					s.removeMember(ctx, name, c.Room, m)
				}
			}
		}
		return nil
	}
	room, err := s.createRoom(ctx, name)
	if err != nil {
		return err
	}
	if err := s.st.SetCircleRoom(ctx, name, room); err != nil {
		s.dropRoom(ctx, name, room)
		return err
	}
	s.log.Info("circle group chat opened", "circle", name, "room", room)
	// The members as of now: a redemption that committed before the room
	// was recorded found no room to add its newcomer to.
	members, err := s.st.CircleMembers(ctx, name)
	if err != nil {
		s.log.Warn("reading circle members failed", "circle", name, "err", err)
		members = c.Members
	}
	for _, m := range members {
		if err := s.chat.AddMember(ctx, room, name, m); err != nil {
			s.log.Warn("adding a circle's group chat membership failed", "circle", name, "user", m, "err", err)
		}
	}
	return nil
}

// createRoom creates the group chat room of circle name
// (GroupChat.CreateRoom) and returns its bare JID; s.chat must be set.
func (s *Service) createRoom(ctx context.Context, name string) (string, error) {
	room, err := s.chat.CreateRoom(ctx, name)
	if err != nil {
		return "", fmt.Errorf("invite: creating the group chat of circle %q: %w", name, err)
	}
	return room, nil
}

// dropRoom destroys room, just created for circle name but not recorded;
// a failure is logged.
func (s *Service) dropRoom(ctx context.Context, name, room string) {
	if err := s.chat.DestroyRoom(ctx, room); err != nil {
		s.log.Warn("destroying the room of a circle not recorded failed", "circle", name, "room", room, "err", err)
	}
}

// closeChat destroys the group chat room of c (which has one; s.chat must
// be set), then takes every member's affiliation and bookmark away
// (failures logged). Nothing is changed if destroying fails.
func (s *Service) closeChat(ctx context.Context, c store.Circle) error {
	if err := s.chat.DestroyRoom(ctx, c.Room); err != nil {
		return fmt.Errorf("invite: destroying the group chat of circle %q: %w", c.Name, err)
	}
	for _, m := range c.Members {
		s.removeMember(ctx, c.Name, c.Room, m)
	}
	return nil
}

// removeMember takes user's affiliation in room and bookmark of it away
// (GroupChat.RemoveMember); a failure is logged.
func (s *Service) removeMember(ctx context.Context, circle, room, user string) {
	if err := s.chat.RemoveMember(ctx, room, user); err != nil {
		s.log.Warn("removing a circle's group chat membership failed", "circle", circle, "user", user, "err", err)
	}
}

// JoinCircle adds the existing account username to circle (created
// without a group chat if needed) and gives it mutual subscriptions with
// the other members, in the roster group named after the circle, and, if
// the circle has a group chat, the member affiliation in its room and an
// autojoin bookmark of it (failures there are logged: the membership
// stays). Errors: a plain error for an invalid circle name; store errors
// (ErrNotFound for an unknown account).
func (s *Service) JoinCircle(ctx context.Context, circle, username string) error {
	if err := ValidCircleName(circle); err != nil {
		return err
	}
	s.circleMu.Lock()
	defer s.circleMu.Unlock()
	if err := s.st.JoinCircle(ctx, circle, username); err != nil {
		return err
	}
	s.log.Info("circle joined", "circle", circle, "user", username)
	s.connectCircle(ctx, circle, username)
	return nil
}

// LeaveCircle removes username from circle; if the circle has a group
// chat, username loses its affiliation in the room (an occupant is removed
// with status 321, XEP-0045 §9.4) and its bookmark of it (failures there
// are logged). Like DeleteCircle, the roster items stay. Not being a
// member is no error. Errors: an error matching store.ErrNotFound for an
// unknown circle, or store errors.
func (s *Service) LeaveCircle(ctx context.Context, circle, username string) error {
	s.circleMu.Lock()
	defer s.circleMu.Unlock()
	c, err := s.st.Circle(ctx, circle)
	if err != nil {
		return err
	}
	if err := s.st.LeaveCircle(ctx, circle, username); err != nil {
		return err
	}
	s.log.Info("circle left", "circle", circle, "user", username)
	if c.Room == "" {
		return nil
	}
	if s.chat == nil {
		s.log.Warn("the circle has a group chat but no group chat backend is configured", "circle", circle, "room", c.Room)
		return nil
	}
	s.removeMember(ctx, circle, c.Room, username)
	return nil
}

// connectCircle gives user, a member of circle, mutual subscriptions with
// every other member in the roster group named after the circle (if the
// Service has a Roster), and the membership and bookmark of the circle's
// group chat if it has one (if the Service has a GroupChat). Failures are
// logged.
func (s *Service) connectCircle(ctx context.Context, circle, user string) {
	c, err := s.st.Circle(ctx, circle)
	if err != nil {
		s.log.Warn("reading circle failed", "circle", circle, "err", err)
		return
	}
	if s.roster != nil {
		for _, m := range c.Members {
			if m == user {
				continue
			}
			if err := s.roster.AddRosterItemMutual(ctx, user, m, circle); err != nil {
				s.log.Warn("subscribing circle members failed", "circle", circle, "user", user, "member", m, "err", err)
			}
		}
	}
	switch {
	case c.Room == "":
	case s.chat == nil:
		s.log.Warn("the circle has a group chat but no group chat backend is configured", "circle", circle, "room", c.Room)
	default:
		if err := s.chat.AddMember(ctx, c.Room, circle, user); err != nil {
			s.log.Warn("adding a circle's group chat membership failed", "circle", circle, "user", user, "err", err)
		}
	}
}
