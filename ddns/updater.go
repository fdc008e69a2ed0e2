package ddns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/libdns/libdns"
)

// Settings is where the Updater remembers which records it created: the
// store's settings table (*store.Store satisfies it). Setting returns an
// error matching store.ErrNotFound for an unset key.
type Settings interface {
	Setting(ctx context.Context, key string) (string, error)
	SetSetting(ctx context.Context, key, value string) error
}

// SettingOwned is the settings key holding the JSON list of DNS records the
// Updater created (zone, name, type, value), so that it never changes or
// deletes anything else.
const SettingOwned = "ddns.owned"

// Defaults for Config.
const (
	DefaultInterval   = 5 * time.Minute
	DefaultMaxBackoff = time.Hour
	DefaultTTL        = 5 * time.Minute
	// DefaultRefresh is how often records are checked against the zone even
	// when the addresses did not change (someone may have deleted one).
	DefaultRefresh = 6 * time.Hour
	srvTTL         = time.Hour
)

// Config configures an Updater. Domain, Provider, Store and Discover are
// required.
type Config struct {
	// Domain is the XMPP domain (RFC 6120 §2.1), e.g. "example.org": it gets
	// the A/AAAA records and is the SRV target.
	Domain string
	// Zone is the DNS zone Provider manages, e.g. "example.org" (default
	// Domain). Domain and Components must be inside it.
	Zone string
	// Provider changes the zone.
	Provider Provider
	// ProviderName names the provider in Status and logs ("cloudflare").
	ProviderName string
	// Components are the fully qualified component subdomains that must
	// resolve to this host, e.g. "groups.example.org", "upload.example.org".
	Components []string
	// ComponentAddresses publishes A/AAAA records for the components; false
	// (the default) publishes one CNAME per component pointing at Domain,
	// which never needs updating.
	ComponentAddresses bool
	// C2SPort, C2STLSPort and S2SPort are published in the SRV records
	// _xmpp-client._tcp (RFC 6120 §3.2.1), _xmpps-client._tcp (XEP-0368) and
	// _xmpp-server._tcp; 0 omits that record.
	C2SPort, C2STLSPort, S2SPort uint16
	// TTL of the A, AAAA and CNAME records; 0 uses DefaultTTL. SRV records
	// get one hour.
	TTL time.Duration
	// Discover returns the current addresses, usually (*Discoverer).Discover.
	Discover func(ctx context.Context) (Addresses, error)
	// Interval between discoveries; 0 uses DefaultInterval. Each wait is
	// jittered by ±10%.
	Interval time.Duration
	// MaxBackoff caps the exponential backoff after failures (starting at
	// Interval/10, doubling); 0 uses DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Refresh is how often the records are compared with the zone although
	// the addresses did not change; 0 uses DefaultRefresh.
	Refresh time.Duration
	// Store keeps the list of records the Updater owns.
	Store Settings
	// Logger receives one line per record change and per failure (never
	// the provider's credentials); nil uses slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
}

// Record is one DNS record in Status.
type Record struct {
	// Name is the owner name, fully qualified without the final dot.
	Name string `json:"name"`
	// Type is "A", "AAAA", "SRV" or "CNAME".
	Type string `json:"type"`
	// Value is the record data in zone-file form ("192.0.2.1",
	// "0 5 5222 example.org.").
	Value string `json:"value"`
	// Owned reports whether Hearth created it (a matching record someone
	// else created is reported with Owned false and left alone).
	Owned bool `json:"owned"`
}

// Status is the Updater's state for the web UI.
type Status struct {
	Provider string `json:"provider"`
	Domain   string `json:"domain"`
	Zone     string `json:"zone"`
	// Addresses is the last discovery's result.
	Addresses Addresses `json:"addresses"`
	// LastCheck is when addresses were last discovered (successfully or not).
	LastCheck time.Time `json:"last_check"`
	// LastUpdate is when the zone was last found or made complete.
	LastUpdate time.Time `json:"last_update"`
	// LastChange is when a record was last created or deleted.
	LastChange time.Time `json:"last_change"`
	// LastError is the last failure's reason ("" after a success).
	LastError string `json:"last_error,omitempty"`
	// Records are the records in place after the last update.
	Records []Record `json:"records"`
	// Conflicts describe names where records Hearth did not create stop it
	// from publishing its own (they are left untouched).
	Conflicts []string `json:"conflicts,omitempty"`
	// NextCheck is when the next discovery runs.
	NextCheck time.Time `json:"next_check"`
}

// Updater keeps the zone's records current. Create it with New, run Run in a
// goroutine; Status and Update are safe to call concurrently.
type Updater struct {
	cfg  Config
	zone string // FQDN without final dot, lower case
	log  *slog.Logger

	upd sync.Mutex // serialises Update passes

	mu     sync.Mutex
	status Status
	last   Addresses // last addresses the zone was made to match
	synced time.Time // when last made to match
}

// New validates cfg and returns an Updater. It returns an error if a
// required field is missing or Domain/Components are outside Zone.
func New(cfg Config) (*Updater, error) {
	if cfg.Domain == "" || cfg.Provider == nil || cfg.Store == nil || cfg.Discover == nil {
		return nil, errors.New("ddns: Domain, Provider, Store and Discover are required")
	}
	cfg.Domain = normName(cfg.Domain)
	if cfg.Zone == "" {
		cfg.Zone = cfg.Domain
	}
	zone := normName(cfg.Zone)
	for _, n := range append([]string{cfg.Domain}, cfg.Components...) {
		if n = normName(n); n != zone && !strings.HasSuffix(n, "."+zone) {
			return nil, fmt.Errorf("ddns: %s is not inside the zone %s", n, zone)
		}
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	u := &Updater{cfg: cfg, zone: zone, log: log.With("provider", cfg.ProviderName, "zone", zone)}
	u.status = Status{Provider: cfg.ProviderName, Domain: cfg.Domain, Zone: zone}
	return u, nil
}

// Status returns a copy of the current state.
func (u *Updater) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.status
	s.Records = append([]Record(nil), s.Records...)
	s.Conflicts = append([]string(nil), s.Conflicts...)
	return s
}

// Run discovers the addresses every Interval (±10% jitter) and updates the
// zone when they changed or Refresh has passed; after a failure it waits
// Interval/10, doubling up to MaxBackoff. It returns ctx's error when ctx
// ends.
func (u *Updater) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		err := u.Check(ctx)
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if backoff == 0 {
				backoff = max(u.cfg.Interval/10, time.Second)
			} else {
				backoff = min(backoff*2, u.cfg.MaxBackoff)
			}
			wait = backoff
		} else {
			backoff = 0
			wait = u.cfg.Interval
		}
		wait = jitter(wait)
		u.mu.Lock()
		u.status.NextCheck = u.cfg.Now().Add(wait)
		u.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// jitter spreads d uniformly over ±10%.
func jitter(d time.Duration) time.Duration {
	span := int64(d) / 5
	if span <= 0 {
		return d
	}
	return d - time.Duration(span/2) + time.Duration(rand.Int64N(span+1))
}

// Check runs one discovery and, when the addresses changed since the last
// successful update or Refresh has passed, one Update. It returns the
// discovery's or the update's error (also kept in Status).
func (u *Updater) Check(ctx context.Context) error {
	addrs, err := u.cfg.Discover(ctx)
	now := u.cfg.Now()
	u.mu.Lock()
	u.status.LastCheck = now
	if err != nil {
		u.status.LastError = "address discovery: " + err.Error()
		u.mu.Unlock()
		u.log.Warn("ddns: address discovery failed", "err", err)
		return err
	}
	if addrs.Warning != "" && addrs.Warning != u.status.Addresses.Warning {
		u.log.Warn("ddns: " + addrs.Warning)
	}
	u.status.Addresses = addrs
	due := !addrs.Equal(u.last) || u.synced.IsZero() || now.Sub(u.synced) >= u.cfg.Refresh
	u.mu.Unlock()
	if !due {
		return nil
	}
	return u.Update(ctx, addrs)
}

// rrKey identifies an RRset.
type rrKey struct{ name, typ string }

// owned is one record the Updater created, as stored under SettingOwned.
type owned struct {
	Zone  string `json:"zone"`
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Update makes the zone publish addrs: A/AAAA for Domain (and for the
// components with ComponentAddresses), the SRV records, and the component
// CNAMEs. For each RRset it adds what is missing and deletes stale values,
// but only when every record already in that RRset is one it created; an
// RRset holding anyone else's record is left untouched and reported in
// Status.Conflicts (unless it already holds exactly the wanted values). A
// component CNAME is only created where the name has no record at all. An
// invalid IPv4 in addrs means "unknown" and leaves the A records as they
// are; an invalid IPv6 means "none" and removes Hearth's own AAAA records.
// Provider errors stop the pass and are returned (and kept in Status).
func (u *Updater) Update(ctx context.Context, addrs Addresses) error {
	u.upd.Lock()
	defer u.upd.Unlock()
	err := u.update(ctx, addrs)
	now := u.cfg.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if err != nil {
		u.status.LastError = err.Error()
		u.log.Warn("ddns: update failed", "err", err)
		return err
	}
	u.status.LastError = ""
	u.status.LastUpdate = now
	u.last, u.synced = addrs, now
	return nil
}

func (u *Updater) update(ctx context.Context, addrs Addresses) error {
	own, err := u.loadOwned(ctx)
	if err != nil {
		return err
	}
	recs, err := u.cfg.Provider.GetRecords(ctx, u.zone)
	if err != nil {
		return fmt.Errorf("reading zone %s: %w", u.zone, err)
	}
	cur := map[rrKey][]string{}
	names := map[string]bool{} // names holding any record
	for _, r := range recs {
		rr := r.RR()
		name := normName(libdns.AbsoluteName(rr.Name, u.zone+"."))
		typ := strings.ToUpper(rr.Type)
		k := rrKey{name, typ}
		cur[k] = append(cur[k], normValue(typ, rr.Data))
		names[name] = true
	}

	var records []Record
	var conflicts []string
	for _, want := range u.desired(addrs) {
		k := want.key
		present := cur[k]
		var foreign []string
		for _, v := range present {
			if !own[owned{u.zone, k.name, k.typ, v}] {
				foreign = append(foreign, v)
			}
		}
		if want.ifEmptyName && len(present) == 0 && names[k.name] {
			conflicts = append(conflicts, fmt.Sprintf("%s already has records that Hearth did not create; no %s added", k.name, k.typ))
			continue
		}
		if len(foreign) > 0 {
			if sameSet(foreign, want.values) && len(foreign) == len(present) {
				for _, v := range foreign {
					records = append(records, Record{k.name, k.typ, v, false})
				}
				continue
			}
			conflicts = append(conflicts, fmt.Sprintf("%s %s has records Hearth did not create (%s); left untouched",
				k.name, k.typ, strings.Join(foreign, ", ")))
			continue
		}
		var add, del []string
		for _, v := range want.values {
			if !contains(present, v) {
				add = append(add, v)
			}
		}
		for _, v := range present {
			if !contains(want.values, v) {
				del = append(del, v)
			}
		}
		if len(add) > 0 {
			// Remember first: a record we created but forgot would
			// look like someone else's forever.
			for _, v := range add {
				own[owned{u.zone, k.name, k.typ, v}] = true
			}
			if err := u.saveOwned(ctx, own); err != nil {
				return err
			}
			rs, err := u.libdnsRecords(k, add, want.ttl)
			if err != nil {
				return err
			}
			if _, err := u.cfg.Provider.AppendRecords(ctx, u.zone, rs); err != nil {
				return fmt.Errorf("creating %s %s: %w", k.name, k.typ, err)
			}
			for _, v := range add {
				u.log.Info("ddns: record created", "name", k.name, "type", k.typ, "value", v)
			}
			u.changed()
		}
		if len(del) > 0 {
			rs, err := u.libdnsRecords(k, del, 0)
			if err != nil {
				return err
			}
			if _, err := u.cfg.Provider.DeleteRecords(ctx, u.zone, rs); err != nil {
				return fmt.Errorf("deleting %s %s: %w", k.name, k.typ, err)
			}
			for _, v := range del {
				delete(own, owned{u.zone, k.name, k.typ, v})
				u.log.Info("ddns: record deleted", "name", k.name, "type", k.typ, "value", v)
			}
			if err := u.saveOwned(ctx, own); err != nil {
				return err
			}
			u.changed()
		}
		for _, v := range want.values {
			records = append(records, Record{k.name, k.typ, v, true})
		}
	}
	// Forget owned records that are gone from the zone and no longer wanted.
	forgot := false
	for o := range own {
		if o.Zone == u.zone && !contains(cur[rrKey{o.Name, o.Type}], o.Value) && !u.wanted(addrs, o) {
			delete(own, o)
			forgot = true
		}
	}
	if forgot {
		if err := u.saveOwned(ctx, own); err != nil {
			return err
		}
	}
	for _, c := range conflicts {
		u.log.Warn("ddns: " + c)
	}
	u.mu.Lock()
	u.status.Records, u.status.Conflicts = records, conflicts
	u.mu.Unlock()
	return nil
}

func (u *Updater) changed() {
	now := u.cfg.Now()
	u.mu.Lock()
	u.status.LastChange = now
	u.mu.Unlock()
}

// rrset is one wanted RRset.
type rrset struct {
	key         rrKey
	values      []string // normalised; empty means "none of ours"
	ttl         time.Duration
	ifEmptyName bool // only create when the name holds no record at all
}

// desired lists the RRsets Hearth publishes for addrs.
func (u *Updater) desired(addrs Addresses) []rrset {
	ttl := u.cfg.TTL
	addr := func(name string) []rrset {
		var out []rrset
		// An unknown IPv4 (no STUN answer) leaves the A records alone; no
		// global IPv6 on the interfaces means no AAAA.
		if addrs.IPv4.IsValid() {
			out = append(out, rrset{key: rrKey{name, "A"}, values: []string{addrs.IPv4.String()}, ttl: ttl})
		}
		var aaaa []string
		if addrs.IPv6.IsValid() {
			aaaa = []string{addrs.IPv6.String()}
		}
		return append(out, rrset{key: rrKey{name, "AAAA"}, values: aaaa, ttl: ttl})
	}
	out := addr(u.cfg.Domain)
	target := u.cfg.Domain + "."
	for _, s := range []struct {
		label string
		port  uint16
	}{{"_xmpp-client._tcp", u.cfg.C2SPort}, {"_xmpps-client._tcp", u.cfg.C2STLSPort}, {"_xmpp-server._tcp", u.cfg.S2SPort}} {
		if s.port == 0 {
			continue
		}
		out = append(out, rrset{
			key:    rrKey{s.label + "." + u.cfg.Domain, "SRV"},
			values: []string{fmt.Sprintf("0 5 %d %s", s.port, target)},
			ttl:    srvTTL,
		})
	}
	for _, c := range u.cfg.Components {
		c = normName(c)
		if c == u.cfg.Domain {
			continue
		}
		if u.cfg.ComponentAddresses {
			out = append(out, addr(c)...)
		} else {
			out = append(out, rrset{key: rrKey{c, "CNAME"}, values: []string{target}, ttl: ttl, ifEmptyName: true})
		}
	}
	return out
}

// wanted reports whether o is among the records desired for addrs.
func (u *Updater) wanted(addrs Addresses, o owned) bool {
	for _, w := range u.desired(addrs) {
		if w.key == (rrKey{o.Name, o.Type}) && contains(w.values, o.Value) {
			return true
		}
	}
	return false
}

// libdnsRecords builds provider records for values of the RRset k.
func (u *Updater) libdnsRecords(k rrKey, values []string, ttl time.Duration) ([]libdns.Record, error) {
	rel := libdns.RelativeName(k.name+".", u.zone+".")
	var out []libdns.Record
	for _, v := range values {
		switch k.typ {
		case "A", "AAAA":
			ip, err := netip.ParseAddr(v)
			if err != nil {
				return nil, err
			}
			out = append(out, libdns.Address{Name: rel, TTL: ttl, IP: ip})
		case "CNAME":
			out = append(out, libdns.CNAME{Name: rel, TTL: ttl, Target: v})
		case "SRV":
			// rel is "_service._proto[.name]".
			parts := strings.SplitN(rel, ".", 3)
			f := strings.Fields(v)
			if len(parts) < 2 || len(f) != 4 {
				return nil, fmt.Errorf("ddns: bad SRV record %s %s", k.name, v)
			}
			name := "@"
			if len(parts) == 3 {
				name = parts[2]
			}
			prio, _ := strconv.ParseUint(f[0], 10, 16)
			weight, _ := strconv.ParseUint(f[1], 10, 16)
			port, _ := strconv.ParseUint(f[2], 10, 16)
			out = append(out, libdns.SRV{
				Service: strings.TrimPrefix(parts[0], "_"), Transport: strings.TrimPrefix(parts[1], "_"),
				Name: name, TTL: ttl, Priority: uint16(prio), Weight: uint16(weight), Port: uint16(port), Target: f[3],
			})
		default:
			return nil, fmt.Errorf("ddns: unexpected record type %s", k.typ)
		}
	}
	return out, nil
}

func (u *Updater) loadOwned(ctx context.Context) (map[owned]bool, error) {
	m := map[owned]bool{}
	v, err := u.cfg.Store.Setting(ctx, SettingOwned)
	if errors.Is(err, store.ErrNotFound) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ddns: reading owned records: %w", err)
	}
	var list []owned
	if err := json.Unmarshal([]byte(v), &list); err != nil {
		return nil, fmt.Errorf("ddns: owned records: %w", err)
	}
	for _, o := range list {
		m[o] = true
	}
	return m, nil
}

func (u *Updater) saveOwned(ctx context.Context, m map[owned]bool) error {
	list := make([]owned, 0, len(m))
	for o := range m {
		list = append(list, o)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.Zone != b.Zone {
			return a.Zone < b.Zone
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.Value < b.Value
	})
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	if err := u.cfg.Store.SetSetting(ctx, SettingOwned, string(b)); err != nil {
		return fmt.Errorf("ddns: saving owned records: %w", err)
	}
	return nil
}

// normName lower-cases a domain name and drops the final dot.
func normName(s string) string { return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".") }

// fqdn lower-cases a name and ensures the final dot.
func fqdn(s string) string { return normName(s) + "." }

// normValue puts record data of type typ in the form the Updater compares.
func normValue(typ, data string) string {
	data = strings.TrimSpace(data)
	switch typ {
	case "A", "AAAA":
		if ip, err := netip.ParseAddr(data); err == nil {
			return ip.Unmap().String()
		}
	case "CNAME":
		return fqdn(data)
	case "SRV":
		if f := strings.Fields(data); len(f) == 4 {
			return fmt.Sprintf("%s %s %s %s", f[0], f[1], f[2], fqdn(f[3]))
		}
	}
	return data
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// sameSet reports whether a and b hold the same values.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, v := range a {
		if !contains(b, v) {
			return false
		}
	}
	return true
}
