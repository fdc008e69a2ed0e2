package store

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func wantDomain(t *testing.T, s *Store, want string) {
	t.Helper()
	got, err := s.Setting(ctx, SettingDomain)
	if err != nil || got != want {
		t.Fatalf("domain = %q, %v; want %q", got, err, want)
	}
}

// A fresh data directory (the wizard's administrator, settings) is renamed
// and remembers the old names; data made under the old domain stops the
// rename and leaves everything as it was.
func TestRenameDomain(t *testing.T) {
	s, _ := openTest(t)
	wantNoErr(t, "domain", s.SetSetting(ctx, SettingDomain, "hearth.local"))
	wantNoErr(t, "turn secret", s.SetSetting(ctx, "turn-secret", "x"))
	wantNoErr(t, "admin", s.CreateFirstAdmin(ctx, "dad", []ScramKey{key("SHA-256", "dad")}))

	wantErr(t, "wrong old domain", s.RenameDomain(ctx, "other.example", "family.example"), ErrNotFound)
	wantNoErr(t, "rename", s.RenameDomain(ctx, "hearth.local", "family.example"))
	wantDomain(t, s, "family.example")
	wantNoErr(t, "rename again", s.RenameDomain(ctx, "family.example", "family.test"))
	wantDomain(t, s, "family.test")
	prev, err := s.PreviousDomains(ctx)
	if err != nil || !slices.Equal(prev, []string{"hearth.local", "family.example"}) {
		t.Fatalf("previous = %q, %v", prev, err)
	}
	// Back to an earlier name: it leaves the list.
	wantNoErr(t, "rename back", s.RenameDomain(ctx, "family.test", "hearth.local"))
	if prev, _ := s.PreviousDomains(ctx); !slices.Equal(prev, []string{"family.example", "family.test"}) {
		t.Fatalf("previous after going back = %q", prev)
	}

	// A second account: no longer fresh.
	mustCreate(t, s, "mum")
	err = s.RenameDomain(ctx, "hearth.local", "family.example")
	var nf *NotFreshError
	if !errors.As(err, &nf) || nf.Accounts != 2 || len(nf.Tables) != 0 {
		t.Fatalf("two accounts: %v", err)
	}
	wantNoErr(t, "delete mum", s.DeleteAccount(ctx, "mum"))

	// An offline message and a roster item: refused, nothing changed.
	_, err = s.PutRosterItem(ctx, "dad", RosterItem{JID: "grandma@hearth.local"})
	wantNoErr(t, "roster", err)
	wantNoErr(t, "offline", s.PushOffline(ctx, "dad", []byte("<message/>"), time.Now(), 10))
	err = s.RenameDomain(ctx, "hearth.local", "family.example")
	if !errors.As(err, &nf) || !slices.Equal(nf.Tables, []string{"offline_messages", "roster_items"}) {
		t.Fatalf("used data: %v", err)
	}
	if r := nf.Reason(); r != "there are messages waiting for delivery, contact lists" {
		t.Errorf("reason = %q", r)
	}
	wantDomain(t, s, "hearth.local")
	if prev, _ := s.PreviousDomains(ctx); !slices.Equal(prev, []string{"family.example", "family.test"}) {
		t.Fatalf("previous after the refusal = %q", prev)
	}
}

func TestSetSettings(t *testing.T) {
	s, _ := openTest(t)
	wantNoErr(t, "set", s.SetSettings(ctx, map[string]string{"a": "1", "b": "2"}))
	wantNoErr(t, "set", s.SetSettings(ctx, map[string]string{"a": "", "b": "3"}))
	if _, err := s.Setting(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a: %v", err)
	}
	if v, _ := s.Setting(ctx, "b"); v != "3" {
		t.Errorf("b = %q", v)
	}
}
