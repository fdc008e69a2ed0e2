// Package pep implements XEP-0163 Personal Eventing Protocol: every account is
// a virtual XEP-0060 publish-subscribe service whose nodes only the account
// owner publishes to, and whose events reach the owner's resources and the
// contacts with a presence subscription that ask for them through XEP-0115
// entity capabilities ("+notify"). It is what XEP-0084 avatars, XEP-0292
// vCard4, XEP-0384 OMEMO device lists and bundles, XEP-0402 bookmarks and
// other XEP-0223 private data use. It also implements XEP-0398 conversion
// between vCard-temp avatars and XEP-0084 (see RegisterVCardConversion).
//
// Supported XEP-0060 use cases, all on the account's bare JID (or with no
// 'to'):
//
//   - publish with auto-create and publish-options (§7.1, §7.1.4, §7.1.5),
//     retract (§7.2), items retrieval: all, by id, max_items (§6.5);
//   - owner use cases: create with configuration (§8.1), configure get/set
//     (§8.2), default configuration (§8.3), delete (§8.4), purge (§8.5);
//   - notifications (§7.1.2.1, §7.2.2.1, §8.4.2, §8.5.2) and last-item
//     delivery on presence (XEP-0163 §4.3.4), filtered by "+notify";
//   - disco#items on the account lists the nodes the requester may read
//     (XEP-0060 §5.2) and a node's item ids (§5.5).
//
// Not supported: explicit subscriptions, affiliations management (whitelists
// other than the owner), roster groups, collections, item expiry; requests for
// them get feature-not-implemented.
package pep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// Namespaces (XEP-0060 §16.2, XEP-0004, XEP-0115, XEP-0203).
const (
	// NS is the pubsub namespace (XEP-0060 §16.2).
	NS = "http://jabber.org/protocol/pubsub"
	// NSOwner qualifies owner use cases (XEP-0060 §8).
	NSOwner = NS + "#owner"
	// NSEvent qualifies event notifications (XEP-0060 §7.1.2.1).
	NSEvent = NS + "#event"
	// NSErrors qualifies pubsub-specific error conditions (XEP-0060 §7.1.3).
	NSErrors = NS + "#errors"
	// NSPublishOptions is the FORM_TYPE of publish-options (XEP-0060 §7.1.5).
	NSPublishOptions = NS + "#publish-options"
	// NSNodeConfig is the FORM_TYPE of node configuration (XEP-0060 §8.2).
	NSNodeConfig = NS + "#node_config"
	// NSData is the data forms namespace (XEP-0004).
	NSData = "jabber:x:data"
	// NSCaps is the entity capabilities namespace (XEP-0115 §4).
	NSCaps = "http://jabber.org/protocol/caps"
	// NSDelay is the delayed delivery namespace (XEP-0203), stamped on last
	// published items sent on presence.
	NSDelay = "urn:xmpp:delay"
)

// Well-known nodes with a configuration different from DefaultConfig.
const (
	// NodeBookmarks is the XEP-0402 bookmarks node; PrivateConfig by default.
	NodeBookmarks = "urn:xmpp:bookmarks:1"
	// NodeLegacyBookmarks is XEP-0048 bookmarks over PEP; PrivateConfig by
	// default.
	NodeLegacyBookmarks = "storage:bookmarks"
)

// Limits applied unless options change them.
const (
	// DefaultMaxItems is the most items a node keeps, what "max" means for
	// pubsub#max_items.
	DefaultMaxItems = 1000
	// DefaultMaxNodes is the most nodes one account may have.
	DefaultMaxNodes = 256
	// DefaultMaxItemBytes is the largest payload, in bytes of serialized XML,
	// one item may have.
	DefaultMaxItemBytes = 256 << 10
	// DefaultMaxAccountBytes is the most payload bytes all items of one
	// account may take together.
	DefaultMaxAccountBytes = 32 << 20
	// DefaultCapsCacheSize is how many XEP-0115 verification strings the
	// caps cache remembers.
	DefaultCapsCacheSize = 1000
	// DefaultCapsTimeout bounds the disco#info query to a client whose
	// caps are not in the cache.
	DefaultCapsTimeout = 10 * time.Second
)

// Option configures Register.
type Option func(*Service)

// MaxItems sets what pubsub#max_items "max" means, the most items any node
// keeps; n <= 0 keeps DefaultMaxItems.
func MaxItems(n int) Option { return func(s *Service) { s.maxItems = pick(n, DefaultMaxItems) } }

// MaxNodes sets the most nodes per account; creating more fails with
// policy-violation. n <= 0 keeps DefaultMaxNodes.
func MaxNodes(n int) Option { return func(s *Service) { s.maxNodes = pick(n, DefaultMaxNodes) } }

// MaxItemBytes sets the largest item payload in bytes of serialized XML
// (XEP-0060 §7.1.3.4 payload-too-big); n <= 0 keeps DefaultMaxItemBytes.
func MaxItemBytes(n int) Option {
	return func(s *Service) { s.maxItemBytes = pick(n, DefaultMaxItemBytes) }
}

// MaxAccountBytes sets the most payload bytes of all items of one account;
// a publication beyond it fails with policy-violation. n <= 0 keeps
// DefaultMaxAccountBytes.
func MaxAccountBytes(n int64) Option {
	return func(s *Service) {
		if n <= 0 {
			n = DefaultMaxAccountBytes
		}
		s.maxAccountBytes = n
	}
}

// CapsCacheSize sets how many XEP-0115 verification strings are cached;
// n <= 0 keeps DefaultCapsCacheSize.
func CapsCacheSize(n int) Option {
	return func(s *Service) { s.caps.max = pick(n, DefaultCapsCacheSize) }
}

// CapsTimeout sets how long the service waits for a client's answer to its
// XEP-0115 disco#info query; d <= 0 keeps DefaultCapsTimeout.
func CapsTimeout(d time.Duration) Option {
	return func(s *Service) {
		if d <= 0 {
			d = DefaultCapsTimeout
		}
		s.capsTimeout = d
	}
}

func pick(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// ChangeHook runs after a node of the local account owner changed: an item
// was published or retracted, or the node was purged, deleted or
// reconfigured. It runs in the goroutine of the request, after the
// notifications were sent, with the request's ctx (so a module can mark its
// own changes with a context value and ignore them).
type ChangeHook func(ctx context.Context, owner, node string)

// Service is the PEP service of every local account. Create it with
// Register; its methods are safe for concurrent use.
type Service struct {
	s               *server.Server
	maxItems        int
	maxNodes        int
	maxItemBytes    int
	maxAccountBytes int64
	capsTimeout     time.Duration

	// Set before serving, read-only afterwards.
	defaults map[string]Config
	hooks    map[string][]ChangeHook

	locks [64]sync.Mutex // per-owner serialization of changes, by hash

	caps     capsCache
	sessMu   sync.Mutex
	sessions map[*server.Session]*sessState
	inflight map[string][]*server.Session // caps key -> sessions waiting for its features
}

// features are the XEP-0060 features advertised on accounts (XEP-0163 §6.1).
var features = []string{
	NS,
	NS + "#access-open",
	NS + "#access-presence",
	NS + "#access-roster",
	NS + "#access-whitelist",
	NS + "#auto-create",
	NS + "#auto-subscribe",
	NS + "#config-node",
	NS + "#config-node-max",
	NS + "#create-and-configure",
	NS + "#create-nodes",
	NS + "#delete-items",
	NS + "#delete-nodes",
	NS + "#filtered-notifications",
	NS + "#item-ids",
	NS + "#last-published",
	NS + "#multi-items",
	NS + "#persistent-items",
	NS + "#presence-notifications",
	NS + "#publish",
	NS + "#publish-options",
	NS + "#purge-nodes",
	NS + "#retract-items",
	NS + "#retrieve-default",
	NS + "#retrieve-items",
}

// Register installs the PEP service for every account of s and returns it,
// for modules that publish on behalf of users (bookmarks, avatar
// conversion). It handles pubsub and pubsub#owner IQs to accounts,
// advertises the identity pubsub/pep and the supported XEP-0060 features on
// accounts (XEP-0163 §6.1), and hooks session presence for notification
// filtering and last-item delivery.
//
// It also handles disco#items to accounts, replacing mod/disco's handler
// (which lists no items): call it after disco.Register.
func Register(s *server.Server, opts ...Option) *Service {
	svc := &Service{
		s:               s,
		maxItems:        DefaultMaxItems,
		maxNodes:        DefaultMaxNodes,
		maxItemBytes:    DefaultMaxItemBytes,
		maxAccountBytes: DefaultMaxAccountBytes,
		capsTimeout:     DefaultCapsTimeout,
		defaults: map[string]Config{
			NodeBookmarks:       PrivateConfig(),
			NodeLegacyBookmarks: PrivateConfig(),
		},
		hooks:    make(map[string][]ChangeHook),
		sessions: make(map[*server.Session]*sessState),
		inflight: make(map[string][]*server.Session),
	}
	svc.caps.max = DefaultCapsCacheSize
	for _, o := range opts {
		o(svc)
	}
	s.HandleIQ(server.ToAccount, "get", xml.Name{Space: NS, Local: "pubsub"}, svc.pubsubGet)
	s.HandleIQ(server.ToAccount, "set", xml.Name{Space: NS, Local: "pubsub"}, svc.pubsubSet)
	s.HandleIQ(server.ToAccount, "get", xml.Name{Space: NSOwner, Local: "pubsub"}, svc.ownerGet)
	s.HandleIQ(server.ToAccount, "set", xml.Name{Space: NSOwner, Local: "pubsub"}, svc.ownerSet)
	s.HandleIQ(server.ToAccount, "get", xml.Name{Space: nsDiscoItems, Local: "query"}, svc.discoItems)
	s.AddIdentity(server.ToAccount, "pubsub", "pep", "")
	s.AddFeature(server.ToAccount, features...)
	s.OnAvailable(svc.onAvailable)
	s.OnSessionClosed(svc.onSessionClosed)
	return svc
}

// SetDefaultConfig sets the configuration a node named node gets when it is
// created without one (by auto-create, before publish-options apply). Call
// it before serving, like every registration.
func (svc *Service) SetDefaultConfig(node string, c Config) { svc.defaults[node] = c }

// DefaultConfigFor returns the configuration a new node named node gets:
// the one set with SetDefaultConfig, or DefaultConfig.
func (svc *Service) DefaultConfigFor(node string) Config {
	if c, ok := svc.defaults[node]; ok {
		return c
	}
	return DefaultConfig()
}

// OnChange registers h to run after every change of a node named node of
// any account. Call it before serving.
func (svc *Service) OnChange(node string, h ChangeHook) {
	svc.hooks[node] = append(svc.hooks[node], h)
}

func (svc *Service) changed(ctx context.Context, owner, node string) {
	for _, h := range svc.hooks[node] {
		h(ctx, owner, node)
	}
}

// lock serializes changes to one owner's nodes and returns the unlock.
func (svc *Service) lock(owner string) func() {
	h := fnv.New32a()
	h.Write([]byte(owner))
	m := &svc.locks[h.Sum32()%uint32(len(svc.locks))]
	m.Lock()
	return m.Unlock
}

// Item is a published item (XEP-0060 §7.1).
type Item struct {
	// ID is the ItemID, unique within its node.
	ID string
	// Publisher is the JID that published it (a full JID for client
	// publications, the owner's bare JID for the server's own).
	Publisher string
	// Payload is the item's payload element.
	Payload *xmlel.Element
	// Published is when it was last published.
	Published time.Time
}

// Publish publishes payload as item id ("" for a generated id) to the node
// of the local account owner on the owner's behalf (publisher = the bare
// JID) and returns the item id. A missing node is created with create, or
// with DefaultConfigFor(node) if create is nil; an existing node keeps its
// configuration. Notifications and change hooks run as for a client's
// publication. Errors are *server.StanzaError values, or store errors.
func (svc *Service) Publish(ctx context.Context, owner, node, id string, payload *xmlel.Element, create *Config) (string, error) {
	return svc.publish(ctx, publishReq{owner: owner, publisher: svc.bare(owner).String(),
		node: node, id: id, payload: payload, create: create})
}

// Retract removes the items ids from the node of the local account owner
// (XEP-0060 §7.2), notifying retraction if notify is true, and runs the
// change hooks. A missing node or item is server.ErrItemNotFound; nothing is
// removed then.
func (svc *Service) Retract(ctx context.Context, owner, node string, ids []string, notify bool) error {
	return svc.retract(ctx, owner, node, ids, &notify)
}

// Items returns all items of the node of the local account owner, oldest
// first, without access checks. A missing node is an error matching
// store.ErrNotFound.
func (svc *Service) Items(ctx context.Context, owner, node string) ([]Item, error) {
	return svc.items(ctx, owner, node, nil, 0)
}

// NodeConfig returns the configuration of the node of the local account
// owner; a missing node is an error matching store.ErrNotFound.
func (svc *Service) NodeConfig(ctx context.Context, owner, node string) (Config, error) {
	n, err := svc.s.Store().PEPNode(ctx, owner, node)
	if err != nil {
		return Config{}, err
	}
	return unmarshalConfig(n.Config)
}

func (svc *Service) items(ctx context.Context, owner, node string, ids []string, last int) ([]Item, error) {
	stored, err := svc.s.Store().PEPItems(ctx, owner, node, ids, last)
	if err != nil {
		return nil, err
	}
	out := make([]Item, 0, len(stored))
	for _, it := range stored {
		p, err := xmlel.Parse(string(it.Payload))
		if err != nil {
			return nil, errors.New("pep: stored item " + strconv.Quote(it.ID) + " of " + strconv.Quote(node) + ": " + err.Error())
		}
		out = append(out, Item{ID: it.ID, Publisher: it.Publisher, Payload: p, Published: it.Published})
	}
	return out, nil
}

// bare returns the bare JID of the local account owner.
func (svc *Service) bare(owner string) jid.JID {
	j, err := jid.New(owner, svc.s.Domain().Domainpart(), "")
	if err != nil {
		return svc.s.Domain()
	}
	return j
}

// newID returns a random item id (XEP-0060 §7.1.2: the service generates
// one when the publisher gives none).
func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// action returns the single action child of a pubsub request and, in the
// pubsub namespace, its companion: <publish-options/> of a publish
// (XEP-0060 §7.1.5) or <configure/> of a create (§8.1.3).
func action(p *xmlel.Element, ns string) (act, companion *xmlel.Element, err error) {
	for _, c := range p.Elements() {
		if c.Name.Space != ns {
			return nil, nil, server.Errorf(server.ErrBadRequest, "unexpected element <"+c.Name.Local+"/> in "+ns)
		}
		if ns == NS && (c.Name.Local == "publish-options" || c.Name.Local == "configure") {
			if companion != nil {
				return nil, nil, server.Errorf(server.ErrBadRequest, "more than one <"+c.Name.Local+"/>")
			}
			companion = c
			continue
		}
		if act != nil {
			return nil, nil, server.Errorf(server.ErrBadRequest, "more than one action in the request")
		}
		act = c
	}
	if act == nil {
		return nil, nil, server.Errorf(server.ErrBadRequest, "the request names no pubsub action")
	}
	return act, companion, nil
}

func notImplemented(what string) error {
	return pubsubError(server.ErrFeatureNotImplemented, condUnsupported, what+" is not supported by this PEP service")
}

// pubsubGet answers <pubsub/> gets (XEP-0060 §5, §6.5).
func (svc *Service) pubsubGet(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	act, _, err := action(iq.Payload, NS)
	if err != nil {
		return nil, err
	}
	switch act.Name.Local {
	case "items":
		return svc.handleItems(ctx, iq, act)
	case "subscriptions", "affiliations", "options", "default":
		return nil, notImplemented(act.Name.Local)
	}
	return nil, server.Errorf(server.ErrBadRequest, "<"+act.Name.Local+"/> is not a pubsub get")
}

// pubsubSet answers <pubsub/> sets (XEP-0060 §6, §7, §8.1): only the owner
// may change its service (XEP-0163 §2.2).
func (svc *Service) pubsubSet(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	act, companion, err := action(iq.Payload, NS)
	if err != nil {
		return nil, err
	}
	switch act.Name.Local {
	case "publish", "retract", "create":
	case "subscribe", "unsubscribe", "options":
		return nil, notImplemented(act.Name.Local)
	default:
		return nil, server.Errorf(server.ErrBadRequest, "<"+act.Name.Local+"/> is not a pubsub set")
	}
	if !modutil.IsOwner(svc.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "only the account owner may change its PEP nodes")
	}
	owner := iq.From.Localpart()
	switch act.Name.Local {
	case "publish":
		return svc.handlePublish(ctx, iq, owner, act, companion)
	case "retract":
		return nil, svc.handleRetract(ctx, owner, act)
	default:
		return nil, svc.handleCreate(ctx, owner, act, companion)
	}
}

// ownerGet answers <pubsub xmlns='…#owner'/> gets (XEP-0060 §8.2, §8.3).
func (svc *Service) ownerGet(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	act, _, err := action(iq.Payload, NSOwner)
	if err != nil {
		return nil, err
	}
	if !modutil.IsOwner(svc.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "only the account owner may manage its PEP nodes")
	}
	switch act.Name.Local {
	case "configure":
		node := act.Get("node")
		if node == "" {
			return nil, pubsubError(server.ErrBadRequest, condNodeIDRequired, "")
		}
		c, err := svc.NodeConfig(ctx, iq.From.Localpart(), node)
		if errors.Is(err, store.ErrNotFound) {
			return nil, server.ErrItemNotFound
		}
		if err != nil {
			return nil, err
		}
		return xmlel.New(NSOwner, "pubsub").Add(
			xmlel.New(NSOwner, "configure", "node", node).Add(configForm(c, "form"))), nil
	case "default":
		c := svc.DefaultConfigFor(act.Get("node"))
		return xmlel.New(NSOwner, "pubsub").Add(xmlel.New(NSOwner, "default").Add(configForm(c, "form"))), nil
	case "affiliations", "subscriptions":
		return nil, notImplemented("managing " + act.Name.Local)
	}
	return nil, server.Errorf(server.ErrBadRequest, "<"+act.Name.Local+"/> is not a pubsub owner get")
}

// ownerSet answers <pubsub xmlns='…#owner'/> sets (XEP-0060 §8.2, §8.4, §8.5).
func (svc *Service) ownerSet(ctx context.Context, iq *server.IQ) (*xmlel.Element, error) {
	act, _, err := action(iq.Payload, NSOwner)
	if err != nil {
		return nil, err
	}
	if !modutil.IsOwner(svc.s, iq) {
		return nil, server.Errorf(server.ErrForbidden, "only the account owner may manage its PEP nodes")
	}
	owner := iq.From.Localpart()
	node := act.Get("node")
	switch act.Name.Local {
	case "configure", "delete", "purge":
		if node == "" {
			return nil, pubsubError(server.ErrBadRequest, condNodeIDRequired, "")
		}
	case "affiliations", "subscriptions":
		return nil, notImplemented("managing " + act.Name.Local)
	default:
		return nil, server.Errorf(server.ErrBadRequest, "<"+act.Name.Local+"/> is not a pubsub owner set")
	}
	switch act.Name.Local {
	case "configure":
		x := act.Child(NSData, "x")
		if x == nil {
			return nil, server.Errorf(server.ErrBadRequest, "the configuration needs a data form")
		}
		return nil, svc.configure(ctx, owner, node, parseForm(x))
	case "delete":
		return nil, svc.deleteNode(ctx, owner, node)
	default:
		return nil, svc.purge(ctx, owner, node)
	}
}

// handlePublish answers a publish request (XEP-0060 §7.1).
func (svc *Service) handlePublish(ctx context.Context, iq *server.IQ, owner string, act, companion *xmlel.Element) (*xmlel.Element, error) {
	node := act.Get("node")
	if node == "" {
		return nil, pubsubError(server.ErrBadRequest, condNodeIDRequired, "")
	}
	items := act.ChildrenNamed(NS, "item")
	switch {
	case len(items) == 0:
		return nil, pubsubError(server.ErrBadRequest, condItemRequired, "")
	case len(items) > 1 || len(act.Elements()) > 1:
		return nil, pubsubError(server.ErrBadRequest, condInvalidPayload, "publish one item at a time")
	}
	payloads := items[0].Elements()
	switch len(payloads) {
	case 0:
		return nil, pubsubError(server.ErrBadRequest, condPayloadRequired, "")
	case 1:
	default:
		return nil, pubsubError(server.ErrBadRequest, condInvalidPayload, "an item carries exactly one payload element")
	}
	r := publishReq{owner: owner, publisher: iq.From.String(), node: node, id: items[0].Get("id"), payload: payloads[0]}
	if companion != nil {
		if companion.Name.Local != "publish-options" {
			return nil, server.Errorf(server.ErrBadRequest, "unexpected <"+companion.Name.Local+"/> with publish")
		}
		if x := companion.Child(NSData, "x"); x != nil {
			f := parseForm(x)
			if f.formType != "" && f.formType != NSPublishOptions {
				return nil, pubsubError(server.ErrBadRequest, condInvalidOptions, "the publish-options FORM_TYPE must be "+NSPublishOptions)
			}
			r.options = &f
		}
	}
	id, err := svc.publish(ctx, r)
	if err != nil {
		return nil, err
	}
	return xmlel.New(NS, "pubsub").Add(
		xmlel.New(NS, "publish", "node", node).Add(xmlel.New(NS, "item", "id", id))), nil
}

type publishReq struct {
	owner, publisher, node, id string
	payload                    *xmlel.Element
	options                    *dataForm // publish-options, nil for none
	create                     *Config   // configuration for auto-create, nil for the default
}

// publish stores an item, creating the node if needed, checks
// publish-options (XEP-0060 §7.1.5), notifies (§7.1.2.1) and runs the hooks.
func (svc *Service) publish(ctx context.Context, r publishReq) (string, error) {
	data := []byte(r.payload.String())
	if len(data) > svc.maxItemBytes {
		return "", pubsubError(server.ErrNotAcceptable, condPayloadTooBig,
			"the payload has "+strconv.Itoa(len(data))+" bytes, the limit is "+strconv.Itoa(svc.maxItemBytes))
	}
	if r.id == "" {
		r.id = newID()
	}
	st := svc.s.Store()
	unlock := svc.lock(r.owner)
	n, err := st.PEPNode(ctx, r.owner, r.node)
	var (
		cfg    Config
		create []byte
	)
	switch {
	case errors.Is(err, store.ErrNotFound):
		cfg = svc.DefaultConfigFor(r.node)
		if r.create != nil {
			cfg = *r.create
		}
		if r.options != nil {
			// XEP-0060 §7.1.5: a new node takes the options as configuration.
			if err := r.options.apply(&cfg); err != nil {
				unlock()
				return "", preconditionNotMet(err.Error())
			}
		}
		create = cfg.marshal()
	case err != nil:
		unlock()
		return "", err
	default:
		if cfg, err = unmarshalConfig(n.Config); err != nil {
			unlock()
			return "", err
		}
		if r.options != nil {
			if why := r.options.unmet(cfg); why != "" {
				unlock()
				return "", preconditionNotMet(why)
			}
		}
	}
	now := svc.s.Now()
	_, err = st.PublishPEPItem(ctx, r.owner, r.node,
		store.PEPItem{ID: r.id, Publisher: r.publisher, Payload: data, Published: now}, create,
		store.PEPLimits{MaxItems: cfg.keep(svc.maxItems), MaxNodes: svc.maxNodes, MaxBytes: svc.maxAccountBytes})
	unlock()
	if errors.Is(err, store.ErrQuotaExceeded) {
		return "", quotaError(err)
	}
	if err != nil {
		return "", err
	}
	if cfg.DeliverNotifications {
		item := xmlel.New(NSEvent, "item", "id", r.id)
		if cfg.DeliverPayloads {
			item.Add(r.payload)
		}
		svc.broadcast(ctx, r.owner, r.node, cfg, eventItems(r.node, item))
	}
	svc.changed(ctx, r.owner, r.node)
	return r.id, nil
}

func quotaError(err error) error {
	if strings.Contains(err.Error(), "nodes") {
		return pubsubError(errPolicyViolation, condMaxNodesExceeded, "too many nodes")
	}
	return server.Errorf(errPolicyViolation, "your personal eventing storage is full")
}

// handleRetract answers a retract request (XEP-0060 §7.2).
func (svc *Service) handleRetract(ctx context.Context, owner string, act *xmlel.Element) error {
	node := act.Get("node")
	if node == "" {
		return pubsubError(server.ErrBadRequest, condNodeIDRequired, "")
	}
	var ids []string
	seen := make(map[string]bool)
	for _, it := range act.ChildrenNamed(NS, "item") {
		if id := it.Get("id"); id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return pubsubError(server.ErrBadRequest, condItemRequired, "")
	}
	var notify *bool
	if v := act.Get("notify"); v != "" {
		b, err := boolValue(v)
		if err != nil {
			return server.Errorf(server.ErrBadRequest, "notify must be a boolean")
		}
		notify = &b
	}
	return svc.retract(ctx, owner, node, ids, notify)
}

// retract removes items and notifies (XEP-0060 §7.2.2.1): as notify says,
// or as pubsub#notify_retract says when notify is nil.
func (svc *Service) retract(ctx context.Context, owner, node string, ids []string, notify *bool) error {
	st := svc.s.Store()
	unlock := svc.lock(owner)
	cfg, err := svc.NodeConfig(ctx, owner, node)
	if err == nil {
		err = st.RetractPEPItems(ctx, owner, node, ids)
	}
	unlock()
	if errors.Is(err, store.ErrNotFound) {
		return server.ErrItemNotFound
	}
	if err != nil {
		return err
	}
	send := cfg.NotifyRetract
	if notify != nil {
		send = *notify
	}
	if send && cfg.DeliverNotifications {
		items := xmlel.New(NSEvent, "items", "node", node)
		for _, id := range ids {
			items.Add(xmlel.New(NSEvent, "retract", "id", id))
		}
		svc.broadcast(ctx, owner, node, cfg, xmlel.New(NSEvent, "event").Add(items))
	}
	svc.changed(ctx, owner, node)
	return nil
}

// handleCreate answers a create request, with an optional configuration
// (XEP-0060 §8.1.1, §8.1.3). Instant nodes (no NodeID) are not supported.
func (svc *Service) handleCreate(ctx context.Context, owner string, act, companion *xmlel.Element) error {
	node := act.Get("node")
	if node == "" {
		return pubsubError(server.ErrNotAcceptable, condNodeIDRequired, "instant nodes are not supported")
	}
	cfg := svc.DefaultConfigFor(node)
	if companion != nil {
		if companion.Name.Local != "configure" {
			return server.Errorf(server.ErrBadRequest, "unexpected <"+companion.Name.Local+"/> with create")
		}
		if x := companion.Child(NSData, "x"); x != nil {
			f := parseForm(x)
			if f.formType != "" && f.formType != NSNodeConfig {
				return server.Errorf(server.ErrBadRequest, "the configuration FORM_TYPE must be "+NSNodeConfig)
			}
			if err := f.apply(&cfg); err != nil {
				return server.Errorf(server.ErrNotAcceptable, err.Error())
			}
		}
	}
	unlock := svc.lock(owner)
	err := svc.s.Store().CreatePEPNode(ctx, owner, node, cfg.marshal(), svc.s.Now(), svc.maxNodes)
	unlock()
	switch {
	case errors.Is(err, store.ErrExists):
		return server.Errorf(errConflict, "the node already exists")
	case errors.Is(err, store.ErrQuotaExceeded):
		return quotaError(err)
	case err != nil:
		return err
	}
	svc.changed(ctx, owner, node)
	return nil
}

// configure applies a submitted configuration form (XEP-0060 §8.2.4); a
// cancelled form changes nothing (§8.2.4 cancel).
func (svc *Service) configure(ctx context.Context, owner, node string, f dataForm) error {
	if f.typ == "cancel" {
		if _, err := svc.NodeConfig(ctx, owner, node); errors.Is(err, store.ErrNotFound) {
			return server.ErrItemNotFound
		} else if err != nil {
			return err
		}
		return nil
	}
	if f.typ != "submit" {
		return server.Errorf(server.ErrBadRequest, "the configuration form must be of type submit or cancel")
	}
	if f.formType != "" && f.formType != NSNodeConfig {
		return server.Errorf(server.ErrBadRequest, "the configuration FORM_TYPE must be "+NSNodeConfig)
	}
	unlock := svc.lock(owner)
	cfg, err := svc.NodeConfig(ctx, owner, node)
	if err == nil {
		if aerr := f.apply(&cfg); aerr != nil {
			unlock()
			return server.Errorf(server.ErrNotAcceptable, aerr.Error())
		}
		err = svc.s.Store().ConfigurePEPNode(ctx, owner, node, cfg.marshal(), cfg.keep(svc.maxItems))
	}
	unlock()
	if errors.Is(err, store.ErrNotFound) {
		return server.ErrItemNotFound
	}
	if err != nil {
		return err
	}
	svc.changed(ctx, owner, node)
	return nil
}

// deleteNode deletes a node and notifies if pubsub#notify_delete (XEP-0060
// §8.4).
func (svc *Service) deleteNode(ctx context.Context, owner, node string) error {
	unlock := svc.lock(owner)
	cfg, err := svc.NodeConfig(ctx, owner, node)
	if err == nil {
		err = svc.s.Store().DeletePEPNode(ctx, owner, node)
	}
	unlock()
	if errors.Is(err, store.ErrNotFound) {
		return server.ErrItemNotFound
	}
	if err != nil {
		return err
	}
	if cfg.NotifyDelete && cfg.DeliverNotifications {
		svc.broadcast(ctx, owner, node, cfg, xmlel.New(NSEvent, "event").Add(xmlel.New(NSEvent, "delete", "node", node)))
	}
	svc.changed(ctx, owner, node)
	return nil
}

// purge removes all items of a node and notifies if pubsub#notify_retract
// (XEP-0060 §8.5).
func (svc *Service) purge(ctx context.Context, owner, node string) error {
	unlock := svc.lock(owner)
	cfg, err := svc.NodeConfig(ctx, owner, node)
	if err == nil {
		_, err = svc.s.Store().PurgePEPNode(ctx, owner, node)
	}
	unlock()
	if errors.Is(err, store.ErrNotFound) {
		return server.ErrItemNotFound
	}
	if err != nil {
		return err
	}
	if cfg.NotifyRetract && cfg.DeliverNotifications {
		svc.broadcast(ctx, owner, node, cfg, xmlel.New(NSEvent, "event").Add(xmlel.New(NSEvent, "purge", "node", node)))
	}
	svc.changed(ctx, owner, node)
	return nil
}

// handleItems answers an items request (XEP-0060 §6.5) after the access
// check (§6.5.9).
func (svc *Service) handleItems(ctx context.Context, iq *server.IQ, act *xmlel.Element) (*xmlel.Element, error) {
	node := act.Get("node")
	if node == "" {
		return nil, pubsubError(server.ErrBadRequest, condNodeIDRequired, "")
	}
	owner := iq.To.Localpart()
	cfg, err := svc.NodeConfig(ctx, owner, node)
	if errors.Is(err, store.ErrNotFound) {
		return nil, server.ErrItemNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := svc.checkRead(ctx, owner, cfg, iq.From); err != nil {
		return nil, err
	}
	var ids []string
	for _, it := range act.ChildrenNamed(NS, "item") {
		if id := it.Get("id"); id != "" {
			ids = append(ids, id)
		}
	}
	last := 0
	if v := act.Get("max_items"); v != "" && len(ids) == 0 {
		if last, err = strconv.Atoi(v); err != nil || last < 1 {
			return nil, server.Errorf(server.ErrBadRequest, "max_items must be a positive number")
		}
	}
	items, err := svc.items(ctx, owner, node, ids, last)
	if err != nil {
		return nil, err
	}
	out := xmlel.New(NS, "items", "node", node)
	for _, it := range items {
		out.Add(xmlel.New(NS, "item", "id", it.ID).Add(it.Payload))
	}
	return xmlel.New(NS, "pubsub").Add(out), nil
}

// mayRead reports whether requester may retrieve items of owner's node with
// configuration cfg (XEP-0060 §4.5): the owner always; anyone for open;
// contacts with a 'from' or 'both' subscription for presence and roster;
// nobody else for whitelist.
func (svc *Service) mayRead(ctx context.Context, owner string, cfg Config, requester jid.JID) (bool, error) {
	o := svc.bare(owner)
	if requester.Bare().Equal(o) {
		return true, nil
	}
	switch cfg.AccessModel {
	case AccessOpen:
		return true, nil
	case AccessPresence, AccessRoster:
		return modutil.PresenceAuthorized(ctx, svc.s, o, requester)
	}
	return false, nil
}

// checkRead is mayRead with the XEP-0060 §6.5.9 errors.
func (svc *Service) checkRead(ctx context.Context, owner string, cfg Config, requester jid.JID) error {
	ok, err := svc.mayRead(ctx, owner, cfg, requester)
	switch {
	case err != nil:
		return err
	case ok:
		return nil
	case cfg.AccessModel == AccessPresence:
		return pubsubError(server.ErrNotAuthorized, condPresenceRequired, "")
	case cfg.AccessModel == AccessRoster:
		return pubsubError(server.ErrNotAuthorized, condNotInRosterGroup, "")
	default:
		return pubsubError(server.ErrNotAllowed, condClosedNode, "")
	}
}
