package store

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"
)

func fastKey(seed string) []byte {
	k := sha256.Sum256([]byte(seed))
	return k[:]
}

// slots returns the slot and key seed order of (agent, mech)'s tokens.
func fastSlots(t *testing.T, s *Store, user, agent, mech string) []FASTToken {
	t.Helper()
	toks, err := s.FASTTokens(ctx, user, agent, mech)
	wantNoErr(t, "FASTTokens", err)
	return toks
}

func TestFASTTokenLifecycle(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	const agent, mech = "d4565fa7-4d72-4749-b3d3-740edbf87770", "HT-SHA-256-NONE"
	exp := t0.Add(14 * 24 * time.Hour)

	if toks := fastSlots(t, s, "alice", agent, mech); len(toks) != 0 {
		t.Fatalf("fresh account has tokens: %+v", toks)
	}
	wantErr(t, "PutFASTToken unknown account",
		s.PutFASTToken(ctx, "carol", FASTToken{Agent: agent, Mechanism: mech, Key: fastKey("x"), Expires: exp}, 0), ErrNotFound)
	if err := s.PutFASTToken(ctx, "alice", FASTToken{Agent: agent, Mechanism: mech, Key: []byte("short"), Expires: exp}, 0); err == nil {
		t.Fatal("PutFASTToken accepted a 5-byte key")
	}

	// Issue token 1: it waits in the 'new' slot.
	wantNoErr(t, "PutFASTToken 1", s.PutFASTToken(ctx, "alice", FASTToken{Agent: agent, Mechanism: mech, Key: fastKey("1"), Expires: exp}, 0))
	toks := fastSlots(t, s, "alice", agent, mech)
	if len(toks) != 1 || toks[0].Slot != FASTSlotNew || !bytes.Equal(toks[0].Key, fastKey("1")) ||
		!toks[0].Expires.Equal(exp) || toks[0].Counter != -1 || toks[0].Created.IsZero() {
		t.Fatalf("after issue: %+v", toks)
	}
	// Using it moves it to 'current' and records the count.
	wantNoErr(t, "UseFASTToken", s.UseFASTToken(ctx, "alice", toks[0], 5))
	toks = fastSlots(t, s, "alice", agent, mech)
	if len(toks) != 1 || toks[0].Slot != FASTSlotCurrent || toks[0].Counter != 5 {
		t.Fatalf("after first use: %+v", toks)
	}
	// Replayed or lower counts are refused, higher ones and none accepted.
	wantErr(t, "replayed count", s.UseFASTToken(ctx, "alice", toks[0], 5), ErrFASTReplay)
	wantErr(t, "lower count", s.UseFASTToken(ctx, "alice", toks[0], 2), ErrFASTReplay)
	wantNoErr(t, "no count", s.UseFASTToken(ctx, "alice", toks[0], -1))
	wantNoErr(t, "higher count", s.UseFASTToken(ctx, "alice", toks[0], 6))
	// A wrong key is not the stored token.
	bad := toks[0]
	bad.Key = fastKey("other")
	wantErr(t, "wrong key", s.UseFASTToken(ctx, "alice", bad, -1), ErrNotFound)

	// Rotation: token 2 goes to 'new' while token 1 stays usable.
	wantNoErr(t, "PutFASTToken 2", s.PutFASTToken(ctx, "alice", FASTToken{Agent: agent, Mechanism: mech, Key: fastKey("2"), Expires: exp.Add(time.Hour)}, 0))
	toks = fastSlots(t, s, "alice", agent, mech)
	if len(toks) != 2 || toks[0].Slot != FASTSlotNew || !bytes.Equal(toks[0].Key, fastKey("2")) || toks[1].Slot != FASTSlotCurrent {
		t.Fatalf("after rotation: %+v", toks)
	}
	wantNoErr(t, "use old token", s.UseFASTToken(ctx, "alice", toks[1], 7))
	// Another unused issue replaces token 2.
	wantNoErr(t, "PutFASTToken 3", s.PutFASTToken(ctx, "alice", FASTToken{Agent: agent, Mechanism: mech, Key: fastKey("3"), Expires: exp.Add(2 * time.Hour)}, 0))
	toks = fastSlots(t, s, "alice", agent, mech)
	if len(toks) != 2 || !bytes.Equal(toks[0].Key, fastKey("3")) || toks[0].Counter != -1 {
		t.Fatalf("after second rotation: %+v", toks)
	}
	// Using token 3 retires token 1.
	wantNoErr(t, "use new token", s.UseFASTToken(ctx, "alice", toks[0], 1))
	toks = fastSlots(t, s, "alice", agent, mech)
	if len(toks) != 1 || toks[0].Slot != FASTSlotCurrent || !bytes.Equal(toks[0].Key, fastKey("3")) || toks[0].Counter != 1 {
		t.Fatalf("after using the new token: %+v", toks)
	}

	// Tokens are per agent and mechanism; agent invalidation covers all
	// mechanisms of that agent only.
	wantNoErr(t, "other mech", s.PutFASTToken(ctx, "alice", FASTToken{Agent: agent, Mechanism: "HT-SHA-256-EXPR", Key: fastKey("4"), Expires: exp}, 0))
	wantNoErr(t, "other agent", s.PutFASTToken(ctx, "alice", FASTToken{Agent: "agent-2", Mechanism: mech, Key: fastKey("5"), Expires: exp}, 0))
	wantNoErr(t, "bob", s.PutFASTToken(ctx, "bob", FASTToken{Agent: agent, Mechanism: mech, Key: fastKey("6"), Expires: exp}, 0))
	wantNoErr(t, "DeleteFASTAgentTokens", s.DeleteFASTAgentTokens(ctx, "alice", agent))
	if n := len(fastSlots(t, s, "alice", agent, mech)) + len(fastSlots(t, s, "alice", agent, "HT-SHA-256-EXPR")); n != 0 {
		t.Fatalf("%d tokens left after agent invalidation", n)
	}
	if len(fastSlots(t, s, "alice", "agent-2", mech)) != 1 || len(fastSlots(t, s, "bob", agent, mech)) != 1 {
		t.Fatal("agent invalidation removed other tokens")
	}
	wantNoErr(t, "DeleteFASTTokens", s.DeleteFASTTokens(ctx, "alice"))
	wantNoErr(t, "DeleteFASTTokens again", s.DeleteFASTTokens(ctx, "alice"))
	wantNoErr(t, "DeleteFASTTokens unknown", s.DeleteFASTTokens(ctx, "nobody"))
	if len(fastSlots(t, s, "alice", "agent-2", mech)) != 0 || len(fastSlots(t, s, "bob", agent, mech)) != 1 {
		t.Fatal("DeleteFASTTokens removed the wrong tokens")
	}
}

// A password change (new SCRAM credentials) and account deletion drop the
// account's tokens.
func TestFASTTokensDroppedWithCredentials(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	exp := t0.Add(24 * time.Hour)
	for _, u := range []string{"alice", "bob"} {
		wantNoErr(t, "put", s.PutFASTToken(ctx, u, FASTToken{Agent: "a", Mechanism: "HT-SHA-256-NONE", Key: fastKey(u), Expires: exp}, 0))
	}
	wantNoErr(t, "SetCredentials", s.SetCredentials(ctx, "alice", []ScramKey{key("SHA-256", "new password")}))
	if toks := fastSlots(t, s, "alice", "a", "HT-SHA-256-NONE"); len(toks) != 0 {
		t.Fatalf("tokens survived a password change: %+v", toks)
	}
	if toks := fastSlots(t, s, "bob", "a", "HT-SHA-256-NONE"); len(toks) != 1 {
		t.Fatalf("other account lost its token: %+v", toks)
	}
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "bob"))
	var n int
	wantNoErr(t, "count", s.r.QueryRowContext(ctx, `SELECT count(*) FROM fast_tokens`).Scan(&n))
	if n != 0 {
		t.Fatalf("%d tokens left", n)
	}
}

// Expired tokens are purged and the per-account bound keeps the tokens
// that expire last.
func TestFASTTokenBounds(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")
	const mech = "HT-SHA-256-NONE"
	// Already expired by the time of the next insertion.
	wantNoErr(t, "put expired", s.PutFASTToken(ctx, "alice", FASTToken{Agent: "old", Mechanism: mech, Key: fastKey("old"), Expires: t0}, 0))
	for i, agent := range []string{"a1", "a2", "a3", "a4"} {
		exp := t0.Add(time.Duration(i+1) * time.Hour)
		wantNoErr(t, "put "+agent, s.PutFASTToken(ctx, "alice", FASTToken{Agent: agent, Mechanism: mech, Key: fastKey(agent), Expires: exp}, 3))
	}
	for agent, want := range map[string]int{"old": 0, "a1": 0, "a2": 1, "a3": 1, "a4": 1} {
		if got := len(fastSlots(t, s, "alice", agent, mech)); got != want {
			t.Errorf("agent %s has %d tokens, want %d", agent, got, want)
		}
	}
}
