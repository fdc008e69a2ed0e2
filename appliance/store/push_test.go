package store

import (
	"reflect"
	"testing"
)

func TestPushRegistrations(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")

	regs, err := s.PushRegistrations(ctx, "alice")
	if err != nil || regs != nil {
		t.Fatalf("no registrations: %v, %v", regs, err)
	}
	form := []byte(`<x xmlns="jabber:x:data" type="submit"/>`)
	wantNoErr(t, "EnablePush", s.EnablePush(ctx, "alice", PushRegistration{Service: "push.example.net", Node: "n2", Options: form}, 3))
	wantNoErr(t, "EnablePush", s.EnablePush(ctx, "alice", PushRegistration{Service: "push.example.net", Node: "n1"}, 3))
	wantNoErr(t, "EnablePush", s.EnablePush(ctx, "alice", PushRegistration{Service: "a.example.net", Node: "n1"}, 3))
	err = s.EnablePush(ctx, "alice", PushRegistration{Service: "b.example.net", Node: "n1"}, 3)
	wantErr(t, "EnablePush over quota", err, ErrQuotaExceeded)
	// Re-enabling replaces the options, even at the quota.
	wantNoErr(t, "EnablePush again", s.EnablePush(ctx, "alice", PushRegistration{Service: "push.example.net", Node: "n1", Options: form}, 3))
	wantNoErr(t, "EnablePush again", s.EnablePush(ctx, "alice", PushRegistration{Service: "push.example.net", Node: "n2"}, 3))

	regs, err = s.PushRegistrations(ctx, "alice")
	wantNoErr(t, "PushRegistrations", err)
	type key struct{ svc, node, opts string }
	var got []key
	for _, r := range regs {
		if r.Created.IsZero() || r.Created.Location().String() != "UTC" {
			t.Errorf("Created = %v", r.Created)
		}
		got = append(got, key{r.Service, r.Node, string(r.Options)})
	}
	want := []key{{"a.example.net", "n1", ""}, {"push.example.net", "n1", string(form)}, {"push.example.net", "n2", ""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("registrations = %q, want %q", got, want)
	}
	if regs[2].Options != nil {
		t.Errorf("empty options = %q, want nil", regs[2].Options)
	}

	n, err := s.DisablePush(ctx, "alice", "push.example.net", "n1")
	if err != nil || n != 1 {
		t.Fatalf("DisablePush node: %d, %v", n, err)
	}
	wantNoErr(t, "EnablePush", s.EnablePush(ctx, "alice", PushRegistration{Service: "push.example.net", Node: "n3"}, 0))
	n, err = s.DisablePush(ctx, "alice", "push.example.net", "")
	if err != nil || n != 2 {
		t.Fatalf("DisablePush service: %d, %v", n, err)
	}
	n, err = s.DisablePush(ctx, "alice", "push.example.net", "")
	if err != nil || n != 0 {
		t.Fatalf("DisablePush again: %d, %v", n, err)
	}
	if regs, _ := s.PushRegistrations(ctx, "alice"); len(regs) != 1 || regs[0].Service != "a.example.net" {
		t.Fatalf("left: %v", regs)
	}
	if regs, _ := s.PushRegistrations(ctx, "bob"); regs != nil {
		t.Fatalf("bob: %v", regs)
	}

	_, err = s.PushRegistrations(ctx, "nobody")
	wantErr(t, "PushRegistrations missing user", err, ErrNotFound)
	wantErr(t, "EnablePush missing user", s.EnablePush(ctx, "nobody", PushRegistration{Service: "x", Node: "y"}, 0), ErrNotFound)
	if n, err := s.DisablePush(ctx, "nobody", "x", ""); err != nil || n != 0 {
		t.Fatalf("DisablePush missing user: %d, %v", n, err)
	}

	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice"))
	mustCreate(t, s, "alice")
	if regs, _ := s.PushRegistrations(ctx, "alice"); regs != nil {
		t.Fatalf("registrations survived account deletion: %v", regs)
	}
}
