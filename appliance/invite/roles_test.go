package invite

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/store"
)

// members creates the accounts name → role.
func members(t *testing.T, st *store.Store, roles map[string]string) {
	t.Helper()
	ctx := context.Background()
	for name, role := range roles {
		if err := account.Create(ctx, st, name, name+" password"); err != nil {
			t.Fatal(err)
		}
		if err := st.SetRole(ctx, name, role); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreateForRoles(t *testing.T) {
	s, st, _, _ := newService(t)
	ctx := context.Background()
	members(t, st, map[string]string{"root": store.RoleAdmin, "mum": store.RoleNormal, "kid": store.RoleLimited})
	if err := st.JoinCircle(ctx, "Family", "mum"); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateCircle(ctx, "Work", ""); err != nil {
		t.Fatal(err)
	}

	// A limited account may not invite, whatever it asks for.
	for _, o := range []Options{{}, {Role: store.RoleLimited}} {
		if _, err := s.CreateFor(ctx, "kid", o); !errors.Is(err, ErrNotAllowed) || !strings.Contains(Reason(err), "ask an administrator") {
			t.Fatalf("limited CreateFor(%+v) = %v", o, err)
		}
	}
	// Nor can an unknown account.
	if _, err := s.CreateFor(ctx, "ghost", Options{}); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("unknown inviter: %v", err)
	}

	// A normal account: personal or group invitations of role normal or
	// limited, into its own circles; the inviter is always itself.
	inv, err := s.CreateFor(ctx, "mum", Options{Inviter: "root", Note: "for Grandma"})
	if err != nil {
		t.Fatal(err)
	}
	if inv.Inviter != "mum" || inv.Role != store.RoleNormal || inv.MaxUses != 1 || inv.Note != "for Grandma" {
		t.Fatalf("normal invitation %+v", inv)
	}
	inv, err = s.CreateFor(ctx, "mum", Options{Reusable: true, MaxUses: 5, Role: store.RoleLimited, Expires: MaxExpiry, Circles: []string{" Family", "Family"}})
	if err != nil {
		t.Fatal(err)
	}
	if inv.Role != store.RoleLimited || inv.MaxUses != 5 || len(inv.Circles) != 1 || inv.Circles[0] != "Family" || inv.Expires.Sub(inv.Created) != MaxExpiry {
		t.Fatalf("group invitation %+v", inv)
	}
	for _, tc := range []struct {
		o    Options
		want error
		why  string
	}{
		{Options{Role: store.RoleAdmin}, ErrNotAllowed, "administrators"},
		{Options{Circles: []string{"Work"}}, ErrNotAllowed, `"Work"`},         // exists, not a member
		{Options{Circles: []string{"Secret club"}}, ErrNotAllowed, "circles"}, // does not exist
		{Options{Circles: []string{"Family", "Work"}}, ErrNotAllowed, `"Work"`},
		{Options{Expires: MaxExpiry + time.Hour}, ErrInvalidOptions, "4 weeks"},
		{Options{Expires: time.Minute}, ErrInvalidOptions, "1 hour"},
		{Options{MaxUses: 2}, ErrInvalidOptions, "reusable"},
		{Options{Role: "root"}, ErrInvalidOptions, "role"},
	} {
		_, err := s.CreateFor(ctx, "mum", tc.o)
		if !errors.Is(err, tc.want) || !strings.Contains(Reason(err), tc.why) {
			t.Errorf("normal CreateFor(%+v) = %v (reason %q), want %v about %s", tc.o, err, Reason(err), tc.want, tc.why)
		}
	}
	if _, err := st.Circle(ctx, "Secret club"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a normal member's invitation created a circle: %v", err)
	}

	// An administrator may do anything Create does, as itself.
	inv, err = s.CreateFor(ctx, "root", Options{Role: store.RoleAdmin, Circles: []string{"Work", "New"}, Inviter: "mum"})
	if err != nil {
		t.Fatal(err)
	}
	if inv.Inviter != "root" || inv.Role != store.RoleAdmin || len(inv.Circles) != 2 {
		t.Fatalf("admin invitation %+v", inv)
	}
	if _, err := s.CreateFor(ctx, "root", Options{Expires: time.Minute}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("admin with a bad expiry: %v", err)
	}

	// Exactly the invitations allowed exist.
	mine, err := s.ListFor(ctx, "mum")
	if err != nil || len(mine) != 2 {
		t.Fatalf("mum's invitations: %d %v", len(mine), err)
	}
	if all, _ := s.List(ctx); len(all) != 3 {
		t.Fatalf("%d invitations, want 3", len(all))
	}
}

func TestCreateForMarkedForDeletion(t *testing.T) {
	s, st, c, _ := newService(t)
	ctx := context.Background()
	// gran is the administrator left when root is marked.
	members(t, st, map[string]string{"root": store.RoleAdmin, "gran": store.RoleAdmin, "mum": store.RoleNormal})
	if _, err := s.CreateFor(ctx, "mum", Options{}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"mum", "root"} {
		if err := st.MarkAccountDeletionKeepAdmin(ctx, u, u, c.Now(), c.Now().Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateFor(ctx, u, Options{}); !errors.Is(err, ErrNotAllowed) || !strings.Contains(Reason(err), "being deleted") {
			t.Fatalf("%s marked for deletion: %v", u, err)
		}
	}
}

func TestRevokeFor(t *testing.T) {
	s, st, _, _ := newService(t)
	ctx := context.Background()
	members(t, st, map[string]string{"mum": store.RoleNormal, "dad": store.RoleNormal})
	inv, err := s.CreateFor(ctx, "mum", Options{})
	if err != nil {
		t.Fatal(err)
	}
	operator, err := s.Create(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's invitation, the operator's, or none: all unknown.
	for _, tc := range []struct{ who, token string }{{"dad", inv.Token}, {"mum", operator.Token}, {"", operator.Token}, {"mum", "NOSUCHTOKEN"}, {"mum", "<bad>"}} {
		if err := s.RevokeFor(ctx, tc.who, tc.token); !errors.Is(err, ErrUnknown) {
			t.Fatalf("RevokeFor(%q, %q) = %v, want ErrUnknown", tc.who, tc.token, err)
		}
	}
	if _, err := s.Check(ctx, inv.Token); err != nil {
		t.Fatalf("revoked by someone else: %v", err)
	}
	// Mum takes back her own, even once she is limited.
	if err := st.SetRole(ctx, "mum", store.RoleLimited); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeFor(ctx, "mum", inv.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(ctx, inv.Token); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after RevokeFor: %v", err)
	}
}

func TestReason(t *testing.T) {
	if r := Reason(ErrUnknown); r != "" {
		t.Fatalf("Reason(ErrUnknown) = %q", r)
	}
	if r := Reason(errors.New("x")); r != "" {
		t.Fatalf("Reason(plain) = %q", r)
	}
}
