package account

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
)

func TestCreateAndSetPassword(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	verify := func(pw string) bool {
		k, err := st.Credentials(ctx, "alice", "SHA-512")
		if err != nil {
			t.Fatal(err)
		}
		return auth.VerifyPassword(auth.Credential{Hash: k.Hash, Salt: k.Salt, Iterations: k.Iterations, StoredKey: k.StoredKey, ServerKey: k.ServerKey}, pw)
	}
	if err := Create(ctx, st, "alice", "first"); err != nil {
		t.Fatal(err)
	}
	if err := Create(ctx, st, "alice", "again"); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if !verify("first") {
		t.Fatal("first password does not verify")
	}
	key := make([]byte, 32)
	if err := st.PutFASTToken(ctx, "alice", store.FASTToken{Agent: "phone", Mechanism: "HT-SHA-256-NONE", Key: key, Expires: time.Now().Add(time.Hour)}, 10); err != nil {
		t.Fatal(err)
	}
	if err := SetPassword(ctx, st, "alice", "second"); err != nil {
		t.Fatal(err)
	}
	if verify("first") || !verify("second") {
		t.Fatal("password not replaced")
	}
	if toks, err := st.FASTTokens(ctx, "alice", "phone", "HT-SHA-256-NONE"); err != nil || len(toks) != 0 {
		t.Fatalf("FAST tokens survive a password change: %v %v", toks, err)
	}
	if err := SetPassword(ctx, st, "nobody", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := Create(ctx, st, "bob", ""); !errors.Is(err, auth.ErrInvalidPassword) {
		t.Fatalf("empty password: %v", err)
	}
}
