package store

import (
	"reflect"
	"testing"
)

func TestBlocklist(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")

	l, err := s.Blocklist(ctx, "alice")
	if err != nil || l != nil {
		t.Fatalf("empty blocklist: %v, %v", l, err)
	}
	added, err := s.Block(ctx, "alice", []string{"x@example.net", "example.com", "x@example.net", "y@example.net/r"}, 0)
	wantNoErr(t, "Block", err)
	if want := []string{"x@example.net", "example.com", "y@example.net/r"}; !reflect.DeepEqual(added, want) {
		t.Fatalf("added = %q, want %q", added, want)
	}
	added, err = s.Block(ctx, "alice", []string{"example.com", "z@example.net"}, 0)
	wantNoErr(t, "Block again", err)
	if want := []string{"z@example.net"}; !reflect.DeepEqual(added, want) {
		t.Fatalf("added = %q, want %q", added, want)
	}
	l, err = s.Blocklist(ctx, "alice")
	wantNoErr(t, "Blocklist", err)
	if want := []string{"example.com", "x@example.net", "y@example.net/r", "z@example.net"}; !reflect.DeepEqual(l, want) {
		t.Fatalf("blocklist = %q, want %q", l, want)
	}
	if l, _ := s.Blocklist(ctx, "bob"); l != nil {
		t.Fatalf("bob's blocklist = %q", l)
	}

	// Quota: all or nothing.
	_, err = s.Block(ctx, "alice", []string{"a@example.org", "b@example.org"}, 5)
	wantErr(t, "Block over quota", err, ErrQuotaExceeded)
	if l, _ := s.Blocklist(ctx, "alice"); len(l) != 4 {
		t.Fatalf("refused block changed the list: %q", l)
	}
	added, err = s.Block(ctx, "alice", []string{"x@example.net", "a@example.org"}, 5)
	if err != nil || !reflect.DeepEqual(added, []string{"a@example.org"}) {
		t.Fatalf("Block up to the quota: %q, %v", added, err)
	}
	_, err = s.Block(ctx, "alice", []string{"x@example.net"}, 5) // nothing new: never over quota
	wantNoErr(t, "Block existing at quota", err)

	removed, err := s.Unblock(ctx, "alice", []string{"x@example.net", "nope@example.net", "x@example.net"})
	if err != nil || !reflect.DeepEqual(removed, []string{"x@example.net"}) {
		t.Fatalf("Unblock: %q, %v", removed, err)
	}
	removed, err = s.UnblockAll(ctx, "alice")
	if want := []string{"a@example.org", "example.com", "y@example.net/r", "z@example.net"}; err != nil || !reflect.DeepEqual(removed, want) {
		t.Fatalf("UnblockAll: %q, %v", removed, err)
	}
	if l, _ := s.Blocklist(ctx, "alice"); l != nil {
		t.Fatalf("blocklist after UnblockAll = %q", l)
	}
	removed, err = s.UnblockAll(ctx, "alice")
	if err != nil || removed != nil {
		t.Fatalf("UnblockAll of an empty list: %q, %v", removed, err)
	}

	_, err = s.Blocklist(ctx, "nobody")
	wantErr(t, "Blocklist missing user", err, ErrNotFound)
	_, err = s.Block(ctx, "nobody", []string{"x@y"}, 0)
	wantErr(t, "Block missing user", err, ErrNotFound)
	_, err = s.Unblock(ctx, "nobody", []string{"x@y"})
	wantErr(t, "Unblock missing user", err, ErrNotFound)
	_, err = s.UnblockAll(ctx, "nobody")
	wantErr(t, "UnblockAll missing user", err, ErrNotFound)

	// Deleting the account deletes its list.
	_, err = s.Block(ctx, "bob", []string{"x@y"}, 0)
	wantNoErr(t, "Block bob", err)
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "bob"))
	mustCreate(t, s, "bob")
	if l, _ := s.Blocklist(ctx, "bob"); l != nil {
		t.Fatalf("blocklist survived account deletion: %q", l)
	}
}
