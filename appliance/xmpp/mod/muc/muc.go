// Package muc implements XEP-0045 Multi-User Chat as a component at its own
// domain (conventionally groups.DOMAIN), in the manner of Prosody's MUC:
//
//   - rooms are created by a local account joining a room that does not
//     exist; the creator is its owner and the room stays locked (status 201)
//     until the owner accepts the default configuration (instant room,
//     XEP-0045 §10.1.2) or submits the configuration form (§10.1.3);
//   - persistent and temporary rooms, members-only, password-protected,
//     moderated (visitors and voice requests, §7.13), hidden or public,
//     non-anonymous or semi-anonymous rooms, a maximum number of occupants,
//     invitations (§7.8.2), private messages (§7.5) subject to allowpm;
//   - affiliations (owner, admin, member, outcast) and roles (moderator,
//     participant, visitor) with the muc#admin (§8, §9) and muc#owner (§10)
//     protocols, the status codes of the XEP-0045 registry, room
//     destruction with an alternate venue;
//   - join history (§7.2.15) with XEP-0203 delay stamps, the subject on
//     every join (§8.1), XEP-0359 stanza-ids and XEP-0421 occupant-ids on
//     broadcast messages, XEP-0410 self-ping, room avatars (vcard-temp on
//     the room JID with the XEP-0153 hash in room presence, like Prosody's
//     mod_vcard_muc) and a XEP-0313 archive on each room JID;
//   - rooms (configuration, affiliations, subject, vCard, archive) are
//     stored in SQLite; occupants are not, they rejoin after a restart.
//
// One Service serves every room; each room has its own lock, and everything a
// room sends goes through the room's outbox in order (see room.flush), so a
// stanza bounced back to the room while it is sending cannot deadlock.
package muc

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// Namespaces (XEP-0045 §19.1, XEP-0421, XEP-0410, XEP-0359, XEP-0054,
// XEP-0153, XEP-0004, XEP-0030, XEP-0199, XEP-0313).
const (
	// NS is the MUC namespace: the <x/> of an entry request (XEP-0045 §7.2).
	NS = "http://jabber.org/protocol/muc"
	// NSUser carries items, status codes, invitations and destruction
	// notices to occupants (XEP-0045 §19.1).
	NSUser = NS + "#user"
	// NSAdmin is the role and affiliation protocol (XEP-0045 §8, §9).
	NSAdmin = NS + "#admin"
	// NSOwner is the configuration and destruction protocol (XEP-0045 §10).
	NSOwner = NS + "#owner"
	// NSRoomConfig is the FORM_TYPE of the configuration form (§15.5.3).
	NSRoomConfig = NS + "#roomconfig"
	// NSRoomInfo is the FORM_TYPE of the room's disco#info form (§15.5.4).
	NSRoomInfo = NS + "#roominfo"
	// NSRequest is the FORM_TYPE of voice requests (XEP-0045 §7.13).
	NSRequest = NS + "#request"
	// NSStableID says the room keeps message ids and adds stanza-ids
	// (XEP-0045 §6.1, §17.2).
	NSStableID = NS + "#stable_id"
	// NSSelfPingOpt says the room answers self-pings itself (XEP-0410 §3).
	NSSelfPingOpt = NS + "#self-ping-optimization"
	// NSOccupantID is XEP-0421 anonymous unique occupant identifiers.
	NSOccupantID = "urn:xmpp:occupant-id:0"
	// NSStanzaID is XEP-0359 unique and stable stanza IDs.
	NSStanzaID = "urn:xmpp:sid:0"
	// NSPing is XEP-0199 ping (and XEP-0410 self-ping).
	NSPing = "urn:xmpp:ping"
	// NSVCard is XEP-0054 vcard-temp, for room avatars.
	NSVCard = "vcard-temp"
	// NSVCardUpdate carries the XEP-0153 avatar hash in presence.
	NSVCardUpdate = "vcard-temp:x:update"
	// NSDataForm is XEP-0004 data forms.
	NSDataForm = "jabber:x:data"
	// NSDiscoInfo and NSDiscoItems are XEP-0030 service discovery.
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	// NSMAM and NSMAMv1 are XEP-0313 message archive management.
	NSMAM   = "urn:xmpp:mam:2"
	NSMAMv1 = "urn:xmpp:mam:1"
	// NSChatStates is XEP-0085 chat states (not kept in history).
	NSChatStates = "http://jabber.org/protocol/chatstates"
	// NSHints is XEP-0334 message processing hints.
	NSHints = "urn:xmpp:hints"
	// NSDelay is XEP-0203 delayed delivery.
	NSDelay = "urn:xmpp:delay"

	nsStanzas      = server.NSStanzas
	settingIDKey   = "muc-occupant-id-key" // store setting: the occupant-id HMAC key
	pruneBatchSize = 0                     // store default
)

// Defaults of Options.
const (
	// DefaultHistoryLength is how many recent messages a room replays on
	// join unless the client asks for fewer (XEP-0045 §7.2.15).
	DefaultHistoryLength = 20
	// MaxHistoryLength bounds Options.HistoryLength.
	MaxHistoryLength = 200
	// DefaultMaxVCardBytes bounds a room's vCard, as serialized XML.
	DefaultMaxVCardBytes = 64 << 10
	// DefaultPruneInterval is how often the archive retention job runs.
	DefaultPruneInterval = time.Hour
	// maxPendingIQs bounds the IQs forwarded between occupants that await
	// an answer; the oldest is forgotten beyond it.
	maxPendingIQs = 1024
	// pendingIQTTL is how long a forwarded IQ's answer is awaited.
	pendingIQTTL = 2 * time.Minute
)

// Options configures the service. Only Domain is required.
type Options struct {
	// Domain is the service's domain, e.g. "groups.example.org".
	Domain string
	// Name is the service's disco identity name; "" means "Group chats".
	Name string
	// Defaults is the configuration new rooms get (and what an instant
	// room keeps, XEP-0045 §10.1.2); nil means DefaultRoomConfig().
	Defaults *RoomConfig
	// Retention is how long archived room messages are kept (XEP-0313);
	// 0 keeps them forever. Hearth passes the user archive's retention.
	Retention time.Duration
	// PruneInterval is how often the retention job runs; 0 means
	// DefaultPruneInterval.
	PruneInterval time.Duration
	// HistoryLength is how many recent messages a joining occupant gets by
	// default and at most (XEP-0045 §7.2.15); 0 means
	// DefaultHistoryLength, negative none; above MaxHistoryLength it is
	// lowered to it.
	HistoryLength int
	// MaxPageSize caps room archive query pages (XEP-0313 §4.3.1); 0 keeps
	// the user archive's default.
	MaxPageSize int
	// MaxVCardBytes bounds a room's vCard; 0 means DefaultMaxVCardBytes.
	MaxVCardBytes int
	// NoLocking creates rooms unlocked with the default configuration
	// instead of locked until the owner configures them (XEP-0045 §10.1.1:
	// the 201 status code is sent either way).
	NoLocking bool
}

// Service is the XEP-0045 component. Its methods are safe for concurrent
// use.
type Service struct {
	s        *server.Server
	domain   jid.JID
	name     string
	defaults RoomConfig
	opts     Options
	history  int

	mu     sync.Mutex
	rooms  map[string]*room // by room localpart
	loaded bool
	idKey  []byte // XEP-0421 occupant-id HMAC key

	pmu     sync.Mutex
	pending map[string]pendingIQ // forwarded IQs by the id the room gave them

	tick <-chan time.Time // tests: replaces the ticker of Start
}

// Register serves group chat at opts.Domain on s (server.AddComponent) and
// advertises the service in the server's disco#items. Call it before the
// first listener starts. It fails for an invalid or duplicate domain or an
// invalid Defaults configuration. Rooms are loaded from the store on the
// first stanza.
func Register(s *server.Server, opts Options) (*Service, error) {
	d, err := jid.Parse(opts.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("muc: invalid domain %q", opts.Domain)
	}
	svc := &Service{
		s:        s,
		domain:   d,
		name:     opts.Name,
		defaults: DefaultRoomConfig(),
		opts:     opts,
		rooms:    make(map[string]*room),
		pending:  make(map[string]pendingIQ),
	}
	if svc.name == "" {
		svc.name = "Group chats"
	}
	if opts.Defaults != nil {
		if err := opts.Defaults.validate(); err != nil {
			return nil, fmt.Errorf("muc: default room configuration: %w", err)
		}
		svc.defaults = *opts.Defaults
	}
	switch {
	case opts.HistoryLength == 0:
		svc.history = DefaultHistoryLength
	case opts.HistoryLength < 0:
		svc.history = 0
	default:
		svc.history = min(opts.HistoryLength, MaxHistoryLength)
	}
	if svc.opts.MaxVCardBytes <= 0 {
		svc.opts.MaxVCardBytes = DefaultMaxVCardBytes
	}
	if svc.opts.PruneInterval <= 0 {
		svc.opts.PruneInterval = DefaultPruneInterval
	}
	if err := s.AddComponent(d.String(), svc); err != nil {
		return nil, err
	}
	return svc, nil
}

// Domain returns the service's domain.
func (svc *Service) Domain() jid.JID { return svc.domain }

// HandleStanza receives every stanza for the service's domain
// (server.Component).
func (svc *Service) HandleStanza(ctx context.Context, st *xmlel.Element, from, to jid.JID) {
	// Stanzas the room sends outlive the sender's stream (a leaving
	// occupant's unavailable presence is processed while it closes).
	ctx = context.WithoutCancel(ctx)
	// Rooms keep presence and messages, and may route what they queued
	// after returning (room.flush): they work on their own copy.
	st = st.Copy()
	if err := svc.load(ctx); err != nil {
		svc.s.Logger().Error("muc: loading rooms failed", "err", err)
		svc.reply(ctx, st, server.ErrInternal)
		return
	}
	if to.Localpart() == "" {
		svc.handleService(ctx, st, from, to)
		return
	}
	switch st.Name.Local {
	case "presence":
		svc.handlePresence(ctx, st, from, to)
	case "message":
		svc.handleMessage(ctx, st, from, to)
	case "iq":
		svc.handleIQ(ctx, st, from, to)
	}
}

// reply sends an error answering st straight away (for stanzas that reach
// no room), unless st is itself an error.
func (svc *Service) reply(ctx context.Context, st *xmlel.Element, se *server.StanzaError) {
	if st.Get("type") == "error" {
		return
	}
	svc.s.Route(ctx, server.ErrorReply(st, se))
}

// load reads the stored rooms once. Temporary rooms left over from a crash
// are deleted (they vanish when empty, and after a restart they are).
func (svc *Service) load(ctx context.Context) error {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if svc.loaded {
		return nil
	}
	st := svc.s.Store()
	key, err := st.Setting(ctx, settingIDKey)
	if errors.Is(err, store.ErrNotFound) {
		var b [32]byte
		rand.Read(b[:])
		key = hex.EncodeToString(b[:])
		err = st.SetSetting(ctx, settingIDKey, key)
	}
	if err != nil {
		return err
	}
	svc.idKey = []byte(key)
	stored, err := st.MUCRooms(ctx)
	if err != nil {
		return err
	}
	for _, sr := range stored {
		r, err := svc.restore(ctx, sr)
		if err != nil {
			svc.s.Logger().Error("muc: skipping a stored room", "room", sr.Name, "err", err)
			continue
		}
		if !r.cfg.Persistent {
			if err := st.DeleteMUCRoom(ctx, sr.Name); err != nil {
				return err
			}
			continue
		}
		svc.rooms[sr.Name] = r
	}
	svc.loaded = true
	return nil
}

// lookup returns the live room named name, or nil. The caller locks it and
// checks room.gone (a room removed meanwhile is looked up again).
func (svc *Service) lookup(name string) *room {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.rooms[name]
}

// lockRoom returns the room named name locked, or nil if there is none.
func (svc *Service) lockRoom(name string) *room {
	for range 8 {
		r := svc.lookup(name)
		if r == nil {
			return nil
		}
		r.mu.Lock()
		if !r.gone {
			return r
		}
		r.mu.Unlock()
	}
	return nil
}

// forget removes r from the room table (after it was destroyed or emptied).
func (svc *Service) forget(r *room) {
	svc.mu.Lock()
	if svc.rooms[r.name] == r {
		delete(svc.rooms, r.name)
	}
	svc.mu.Unlock()
}

// allRooms returns the live rooms.
func (svc *Service) allRooms() []*room {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	out := make([]*room, 0, len(svc.rooms))
	for _, r := range svc.rooms {
		out = append(out, r)
	}
	return out
}

// occupantID returns the XEP-0421 occupant-id of the real bare JID real in
// room: an HMAC of both under the service's stored key, so it is stable
// across restarts, differs between rooms and reveals nothing.
func (svc *Service) occupantID(room, real string) string {
	m := hmac.New(sha256.New, svc.idKey)
	m.Write([]byte(room))
	m.Write([]byte{0})
	m.Write([]byte(real))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// Prune runs one retention pass over the room archives (XEP-0313 §3.2):
// it deletes archived room messages older than the retention and returns
// the count. With retention 0 it does nothing.
func (svc *Service) Prune(ctx context.Context) (int64, error) {
	if svc.opts.Retention <= 0 {
		return 0, nil
	}
	cutoff := svc.s.Now().Add(-svc.opts.Retention)
	n, err := svc.s.Store().PruneMUCArchive(ctx, cutoff, pruneBatchSize)
	switch {
	case err != nil:
		svc.s.Logger().Error("muc: pruning room archives failed", "deleted", n, "err", err)
	case n > 0:
		svc.s.Logger().Info("muc: pruned room archives", "deleted", n, "cutoff", cutoff)
	}
	return n, err
}

// Start runs the retention job until ctx ends: one Prune at once, then one
// every PruneInterval. The returned channel is closed when it has stopped.
// With retention 0 nothing runs and the channel is closed.
func (svc *Service) Start(ctx context.Context) <-chan struct{} {
	if svc.opts.Retention <= 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	return modutil.Periodic(ctx, svc.tick, svc.opts.PruneInterval, func(ctx context.Context) { svc.Prune(ctx) })
}

// randomID returns a random identifier for stanzas the service makes.
func randomID() string {
	var b [9]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// stamp formats t as a XEP-0082 DateTime in UTC with milliseconds.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
