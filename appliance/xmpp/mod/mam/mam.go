// Package mam implements XEP-0313 Message Archive Management for user
// archives (urn:xmpp:mam:2 with the urn:xmpp:mam:2#extended features, and
// the older urn:xmpp:mam:1 answered the same way in its own namespace),
// XEP-0359 stanza-ids for archived messages, XEP-0441 archiving preferences
// and a retention job that deletes old messages.
//
// Every account has one archive on its bare JID, readable only by the
// account itself. Messages a local session sends and messages a local
// account receives are archived when they carry conversation content (see
// Register) and the user's preferences allow it; the copy delivered to the
// recipient carries <stanza-id by='recipient@domain'/> (XEP-0313 §3.5).
package mam

import (
	"context"
	"encoding/xml"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

// Namespaces (XEP-0313, XEP-0359, XEP-0059, XEP-0297, XEP-0004,
// XEP-0334).
const (
	// NS is the current MAM namespace (XEP-0313 §4).
	NS = "urn:xmpp:mam:2"
	// NSExtended is the disco feature for before-id, after-id, ids, flipped
	// pages and archive metadata (XEP-0313 §7).
	NSExtended = "urn:xmpp:mam:2#extended"
	// NSv1 is the previous MAM namespace, still used by some clients; queries
	// in it are answered in it.
	NSv1 = "urn:xmpp:mam:1"
	// NSStanzaID is XEP-0359 unique and stable stanza IDs.
	NSStanzaID = "urn:xmpp:sid:0"
	// NSRSM is XEP-0059 result set management.
	NSRSM = "http://jabber.org/protocol/rsm"
	// NSForward is XEP-0297 stanza forwarding.
	NSForward = "urn:xmpp:forward:0"
	// NSDataForm is XEP-0004 data forms.
	NSDataForm = "jabber:x:data"
	// NSHints is XEP-0334 message processing hints.
	NSHints = "urn:xmpp:hints"
)

// Defaults and bounds of the options.
const (
	// DefaultRetention is how long archived messages are kept by default.
	DefaultRetention = 30 * 24 * time.Hour
	// DefaultMaxPageSize is the default page size cap (XEP-0313 §4.3.1).
	DefaultMaxPageSize = 50
	// HardMaxPageSize is the largest page size MaxPageSize accepts.
	HardMaxPageSize = 250
	// DefaultPruneInterval is how often the retention job runs by default.
	DefaultPruneInterval = time.Hour
	// MaxPrefsJIDs bounds each XEP-0441 always/never list (not-acceptable
	// beyond it).
	MaxPrefsJIDs = 1000
	// MaxQueryIDs bounds the 'ids' field of one query (bad-request beyond it).
	MaxQueryIDs = 250
)

// Option configures Register.
type Option func(*Archive)

// Retention sets how long archived messages are kept (XEP-0313 §3.2): the
// job started by [Archive.Start] deletes messages older than d. d <= 0
// keeps messages forever. Default [DefaultRetention].
func Retention(d time.Duration) Option {
	return func(a *Archive) { a.retention = max(d, 0) }
}

// MaxPageSize sets the most results one query returns, which is also the
// page size when the client gives no <max/> (XEP-0313 §4.3.1); a larger
// client <max/> is lowered to it. n <= 0 keeps [DefaultMaxPageSize]; n above
// [HardMaxPageSize] is lowered to it.
func MaxPageSize(n int) Option {
	return func(a *Archive) {
		if n > 0 {
			a.maxPage = min(n, HardMaxPageSize)
		}
	}
}

// PruneInterval sets how often the retention job runs; d <= 0 keeps
// [DefaultPruneInterval].
func PruneInterval(d time.Duration) Option {
	return func(a *Archive) {
		if d > 0 {
			a.interval = d
		}
	}
}

// Archive is the registered MAM service of one server. Its methods are safe
// for concurrent use.
type Archive struct {
	s         *server.Server
	retention time.Duration
	interval  time.Duration
	maxPage   int
	tick      <-chan time.Time // tests: replaces the ticker of Start
}

// Register installs message archiving on s and returns the archive, whose
// retention job the caller starts with [Archive.Start]. Call it before the
// first listener starts, like every module.
//
// Archiving (XEP-0313 §6.1.1, XEP-0334): a message is archived when it is
// not of type error or groupchat (the room archives those) and either
// carries the <store/> hint, or is of type
// chat or normal (or none) and carries a <body/> or other conversation
// content (OMEMO or OpenPGP payloads, XEP-0444 reactions, XEP-0308
// corrections, XEP-0424 retractions, XEP-0353 call signalling, XEP-0333
// displayed markers) and neither the <no-store/> nor the
// <no-permanent-store/> hint. Messages a local session sends go to the
// sender's archive (outgoing); messages to a local account go to the
// recipient's (incoming), and the delivered copy gets
// <stanza-id xmlns='urn:xmpp:sid:0' by='user@domain' id='...'/> after any
// stanza-id claiming the same 'by' was removed (XEP-0359 §4 rules 3-4). The
// sender's archive id is not added to the routed message (XEP-0313 §3.5).
// A message to oneself is archived once, as incoming. The user's
// preferences decide per contact (XEP-0441). The archive write is durable
// before the hook returns; a failed write is logged and the message still
// delivered.
//
// IQs handled for the account's own bare JID (or no 'to'; another user gets
// forbidden), in urn:xmpp:mam:2 and urn:xmpp:mam:1:
//   - set <query/>: the archive query (XEP-0313 §4, §4.1 filters with,
//     start, end, before-id, after-id, ids; XEP-0059 paging with <max/>,
//     <after/>, <before/> (empty: the last page), <index/>; <flip-page/>):
//     the results are sent to the requesting session as <message/>s from
//     the address queried, then the IQ result carries <fin complete=...>
//     with first, last and count. A <max/> above the cap is lowered to it.
//     Errors: forbidden for another account (§8.1), feature-not-implemented
//     for an unknown form field (§4.1.5), bad-request for malformed forms,
//     dates (XEP-0082), JIDs or RSM, item-not-found for unknown ids (§4.1.3,
//     §4.3.2);
//   - get <query/>: the query form (XEP-0313 §4.1.5);
//   - get/set <prefs/>: the preferences (XEP-0441 §2.1);
//   - get <metadata/> (urn:xmpp:mam:2 only): the first and last entries
//     (XEP-0313 §5).
//
// Disco: the account advertises urn:xmpp:mam:2, urn:xmpp:mam:2#extended,
// urn:xmpp:mam:1 and urn:xmpp:sid:0 (XEP-0313 §7); the server advertises
// urn:xmpp:sid:0 (XEP-0359 §2).
func Register(s *server.Server, opts ...Option) *Archive {
	a := &Archive{s: s, retention: DefaultRetention, interval: DefaultPruneInterval, maxPage: DefaultMaxPageSize}
	for _, o := range opts {
		o(a)
	}
	for _, ns := range []string{NS, NSv1} {
		s.HandleIQ(server.ToAccount, "set", xml.Name{Space: ns, Local: "query"}, a.query)
		s.HandleIQ(server.ToAccount, "get", xml.Name{Space: ns, Local: "query"}, a.form)
		s.HandleIQ(server.ToAccount, "get", xml.Name{Space: ns, Local: "prefs"}, a.getPrefs)
		s.HandleIQ(server.ToAccount, "set", xml.Name{Space: ns, Local: "prefs"}, a.setPrefs)
	}
	s.HandleIQ(server.ToAccount, "get", xml.Name{Space: NS, Local: "metadata"}, a.metadata)
	s.AddFeature(server.ToAccount, NS, NSExtended, NSv1, NSStanzaID)
	s.AddFeature(server.ToServer, NSStanzaID)
	s.OnMessageOut(a.archiveOut)
	s.OnMessageIn(a.archiveIn)
	return a
}

// Prune runs one retention pass: it deletes every archived message older
// than the retention (by the server clock), in bounded batches, logs what it
// removed and returns the count. With retention 0 it does nothing. It
// returns the store's error, or ctx's when ctx ends between batches.
func (a *Archive) Prune(ctx context.Context) (int64, error) {
	if a.retention <= 0 {
		return 0, nil
	}
	started := time.Now()
	cutoff := a.s.Now().Add(-a.retention)
	n, err := a.s.Store().PruneArchive(ctx, cutoff, 0)
	log := a.s.Logger()
	switch {
	case err != nil:
		log.Error("mam: pruning archives failed", "deleted", n, "cutoff", cutoff, "err", err)
	case n > 0:
		log.Info("mam: pruned archives", "deleted", n, "cutoff", cutoff, "took", time.Since(started))
	default:
		log.Debug("mam: nothing to prune", "cutoff", cutoff)
	}
	return n, err
}

// Start runs the retention job in a goroutine until ctx ends: one Prune at
// once, then one every interval (see PruneInterval). The returned channel
// is closed when the goroutine has finished (so the store may be closed).
// With retention 0 no goroutine is started and the channel is closed.
func (a *Archive) Start(ctx context.Context) <-chan struct{} {
	if a.retention <= 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	return modutil.Periodic(ctx, a.tick, a.interval, func(ctx context.Context) { a.Prune(ctx) })
}
