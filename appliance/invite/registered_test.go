package invite

import (
	"context"
	"testing"
)

// TestRegisteredHook: Config.Registered hears of every account registered
// with an invitation or through open registration, and of nothing else.
func TestRegisteredHook(t *testing.T) {
	s, _, _, _ := newService(t)
	var got []string
	s.registered = func(_ context.Context, user string) { got = append(got, user) }
	ctx := context.Background()
	inv, err := s.Create(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Redeem(ctx, inv.Token, "bad name", "pw", s.Now()); err == nil {
		t.Fatal("bad username accepted")
	}
	if _, _, err := s.Redeem(ctx, inv.Token, "Nina", "a password", s.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterOpen(ctx, "closed", "a password"); err == nil {
		t.Fatal("closed registration accepted")
	}
	if err := s.SetOpen(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterOpen(ctx, "Otto", "a password"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "nina" || got[1] != "otto" {
		t.Fatalf("Registered calls %v, want [nina otto]", got)
	}
}
