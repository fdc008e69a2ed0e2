package invite

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// pairs records AddRosterItemMutual calls as "a+b/group".
type pairs struct {
	mu    sync.Mutex
	calls []string
}

func (p *pairs) AddRosterItemMutual(_ context.Context, a, b, group string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, a+"+"+b+"/"+group)
	return nil
}

func newService(t *testing.T) (*Service, *store.Store, *clock, *pairs) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	p := &pairs{}
	s := New(Config{Store: st, Domain: "example.org", Roster: p, Now: c.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return s, st, c, p
}

func TestCreateValidatesOptions(t *testing.T) {
	s, _, _, _ := newService(t)
	ctx := context.Background()
	for _, o := range []Options{
		{Expires: 59 * time.Minute},
		{Expires: 29 * 24 * time.Hour},
		{Role: "root"},
		{MaxUses: 3},                  // personal invitations are single-use
		{Reusable: true, MaxUses: -1}, // negative
		{Inviter: "nobody"},           // no such account
		{Circles: []string{"  "}},     // empty name
		{Circles: []string{"a\x01b"}},
		{Note: strings.Repeat("x", MaxNoteBytes+1)},
	} {
		if _, err := s.Create(ctx, o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Create(%+v) = %v, want ErrInvalidOptions", o, err)
		}
	}
	inv, err := s.Create(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if inv.MaxUses != 1 || inv.Role != store.RoleNormal || inv.Expires.Sub(inv.Created) != DefaultExpiry || len(inv.Token) < 26 {
		t.Fatalf("defaults: %+v", inv)
	}
	other, err := s.Create(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if other.Token == inv.Token {
		t.Fatal("two invitations got the same token")
	}
}

func TestExpiryWithClock(t *testing.T) {
	s, _, c, _ := newService(t)
	ctx := context.Background()
	inv, err := s.Create(ctx, Options{Expires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(59 * time.Minute)
	if _, err := s.Check(ctx, inv.Token); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	checkedAt := s.Now()
	c.Advance(time.Minute)
	if _, err := s.Check(ctx, inv.Token); !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: %v, want ErrExpired", err)
	}
	if _, _, err := s.Redeem(ctx, inv.Token, "late", "pass phrase", s.Now()); !errors.Is(err, ErrExpired) {
		t.Fatalf("redeem after expiry: %v, want ErrExpired", err)
	}
	// XEP-0445 §4: a token accepted on the stream before it expired still
	// registers.
	if user, _, err := s.Redeem(ctx, inv.Token, "Early", "pass phrase", checkedAt); err != nil || user != "early" {
		t.Fatalf("redeem with the earlier check time: %q, %v", user, err)
	}
}

func TestSingleUse(t *testing.T) {
	s, st, _, p := newService(t)
	ctx := context.Background()
	if err := account.Create(ctx, st, "mum", "secret one"); err != nil {
		t.Fatal(err)
	}
	inv, err := s.Create(ctx, Options{Inviter: "mum", Role: store.RoleLimited})
	if err != nil {
		t.Fatal(err)
	}
	user, _, err := s.Redeem(ctx, inv.Token, "kid", "pass phrase", s.Now())
	if err != nil || user != "kid" {
		t.Fatalf("redeem: %q %v", user, err)
	}
	if role, err := st.Role(ctx, "kid"); err != nil || role != store.RoleLimited {
		t.Fatalf("role = %q, %v", role, err)
	}
	if !slices.Equal(p.calls, []string{"mum+kid/"}) {
		t.Fatalf("roster calls %v, want the inviter and the invitee mutually subscribed", p.calls)
	}
	if _, err := s.Check(ctx, inv.Token); !errors.Is(err, ErrUsedUp) {
		t.Fatalf("check after use: %v, want ErrUsedUp", err)
	}
	if _, _, err := s.Redeem(ctx, inv.Token, "kid2", "pass phrase", s.Now()); !errors.Is(err, ErrUsedUp) {
		t.Fatalf("second use: %v, want ErrUsedUp", err)
	}
	got, err := st.Invite(ctx, inv.Token)
	if err != nil || got.Uses != 1 || len(got.UsedBy) != 1 || got.UsedBy[0].Username != "kid" {
		t.Fatalf("stored invite %+v, %v", got, err)
	}
	if ok, _ := st.AccountExists(ctx, "kid2"); ok {
		t.Fatal("the refused registration created an account")
	}
}

func TestReusableMaxUses(t *testing.T) {
	s, st, _, _ := newService(t)
	ctx := context.Background()
	inv, err := s.Create(ctx, Options{Reusable: true, MaxUses: 2, Circles: []string{"Family"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"a", "b"} {
		if _, _, err := s.Redeem(ctx, inv.Token, u, "pass phrase", s.Now()); err != nil {
			t.Fatalf("use by %s: %v", u, err)
		}
	}
	if _, _, err := s.Redeem(ctx, inv.Token, "c", "pass phrase", s.Now()); !errors.Is(err, ErrUsedUp) {
		t.Fatalf("third use: %v, want ErrUsedUp", err)
	}
	members, err := st.CircleMembers(ctx, "Family")
	if err != nil || !slices.Equal(members, []string{"a", "b"}) {
		t.Fatalf("circle members %v, %v", members, err)
	}
	// A taken username does not spend a use.
	unlimited, err := s.Create(ctx, Options{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Redeem(ctx, unlimited.Token, "A", "pass phrase", s.Now()); !errors.Is(err, ErrUsernameTaken) {
		t.Fatalf("taken username: %v", err)
	}
	for i := range 3 {
		if _, _, err := s.Redeem(ctx, unlimited.Token, "u"+string(rune('0'+i)), "pass phrase", s.Now()); err != nil {
			t.Fatalf("unlimited use %d: %v", i, err)
		}
	}
	got, _ := st.Invite(ctx, unlimited.Token)
	if got.Uses != 3 {
		t.Fatalf("uses = %d, want 3", got.Uses)
	}
}

func TestCircleSharedRoster(t *testing.T) {
	s, _, _, p := newService(t)
	ctx := context.Background()
	inv, err := s.Create(ctx, Options{Reusable: true, Circles: []string{"Cousins"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann", "ben", "cat"} {
		if _, _, err := s.Redeem(ctx, inv.Token, u, "pass phrase", s.Now()); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"ben+ann/Cousins", "cat+ann/Cousins", "cat+ben/Cousins"}
	if !slices.Equal(p.calls, want) {
		t.Fatalf("roster calls %v, want %v", p.calls, want)
	}
}

func TestRevoke(t *testing.T) {
	s, _, _, _ := newService(t)
	ctx := context.Background()
	inv, err := s.Create(ctx, Options{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, inv.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(ctx, inv.Token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("check: %v, want ErrRevoked", err)
	}
	if _, _, err := s.Redeem(ctx, inv.Token, "x", "pass phrase", s.Now()); !errors.Is(err, ErrRevoked) {
		t.Fatalf("redeem: %v, want ErrRevoked", err)
	}
	if err := s.Revoke(ctx, "NOSUCHTOKEN"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if _, err := s.Check(ctx, "x'; DROP TABLE invites; --"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("check junk: %v", err)
	}
}

func TestRegistrationInputs(t *testing.T) {
	s, _, _, _ := newService(t)
	ctx := context.Background()
	inv, err := s.Create(ctx, Options{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ user, pass string }{
		{"", "pass phrase"}, {"a@b@c", "pass phrase"}, {"x@other.org", "pass phrase"}, {"bad user", "pass phrase"},
	} {
		if _, _, err := s.Redeem(ctx, inv.Token, c.user, c.pass, s.Now()); !errors.Is(err, ErrInvalidUsername) {
			t.Errorf("Redeem(%q) = %v, want ErrInvalidUsername", c.user, err)
		}
	}
	if _, _, err := s.Redeem(ctx, inv.Token, "ok", "", s.Now()); !errors.Is(err, ErrInvalidPassword) {
		t.Errorf("empty password: %v", err)
	}
	if u, _, err := s.Redeem(ctx, inv.Token, "Zoe@example.org", "pass phrase", s.Now()); err != nil || u != "zoe" {
		t.Errorf("bare JID username: %q %v", u, err)
	}
	if _, err := s.RegisterOpen(ctx, "walkin", "pass phrase"); !errors.Is(err, ErrClosed) {
		t.Fatalf("open registration by default: %v", err)
	}
	if err := s.SetOpen(ctx, true); err != nil {
		t.Fatal(err)
	}
	if u, err := s.RegisterOpen(ctx, "walkin", "pass phrase"); err != nil || u != "walkin" {
		t.Fatalf("opened registration: %q %v", u, err)
	}
}

func TestParseExpiryAndURIs(t *testing.T) {
	for in, want := range map[string]time.Duration{"1h": time.Hour, "7d": 7 * 24 * time.Hour, "4w": MaxExpiry, "90m": 90 * time.Minute} {
		if got, err := ParseExpiry(in); err != nil || got != want {
			t.Errorf("ParseExpiry(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "30m", "5w", "d", "x7d"} {
		if _, err := ParseExpiry(in); err == nil {
			t.Errorf("ParseExpiry(%q) accepted", in)
		}
	}
	if got := URI("example.org", "ABC"); got != "xmpp:example.org?register;preauth=ABC" {
		t.Errorf("URI = %q", got)
	}
	if got := Link("https://example.org/", "ABC"); got != "https://example.org/invite/ABC" {
		t.Errorf("Link = %q", got)
	}
}
