package auth_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
)

// noTransport fails the test if the mechanism asks for another round trip.
type noTransport struct{ t *testing.T }

func (n noTransport) Challenge([]byte) error {
	n.t.Error("HT sent a challenge")
	return errors.New("unexpected challenge")
}

func (n noTransport) Response() ([]byte, error) {
	n.t.Error("HT read a response")
	return nil, errors.New("unexpected response")
}

// Clients key HMAC with the token's bytes; the server only keeps
// TokenKey(token), and the proofs agree (RFC 2104 §2 long-key rule).
func TestTokenKeyEquivalence(t *testing.T) {
	token, key := auth.NewToken()
	if len(token) != auth.TokenSize || !bytes.Equal(key, auth.TokenKey(token)) || bytes.Contains(key, []byte(token)) {
		t.Fatalf("token %q key %x", token, key)
	}
	cb := []byte("channel binding data")
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("Initiator"))
	m.Write(cb)
	init, _ := auth.HTProof(key, cb)
	if !hmac.Equal(init, m.Sum(nil)) {
		t.Fatal("proof with the stored key differs from the client's")
	}
	if other, _ := auth.NewToken(); other == token {
		t.Fatal("tokens repeat")
	}
}

func TestHTAuthenticate(t *testing.T) {
	a := auth.NewAuthenticator(auth.Options{
		Source: defaultStore(t),
		Domain: domain,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		TLSState: func() tls.ConnectionState {
			return tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: true}
		},
	})
	if got := a.TokenMechanisms(); !slices.Equal(got, []string{auth.MechHTNone}) {
		t.Fatalf("TokenMechanisms = %v", got)
	}
	token, key := auth.NewToken()
	initiator, responder := auth.HTProof(key, nil)
	verifier := func(err error) auth.TokenVerifier {
		return func(_ context.Context, user, mech string, match func([]byte) bool) ([]byte, error) {
			if user != "alice" || mech != auth.MechHTNone {
				t.Errorf("verifier called with %q %q", user, mech)
			}
			if err != nil {
				return nil, err
			}
			if match([]byte("some other key")) || !match(key) {
				return nil, auth.ErrUnknownUser
			}
			return key, nil
		}
	}
	run := func(mech, msg string, v auth.TokenVerifier) auth.Outcome {
		t.Helper()
		out, err := a.Authenticate(context.Background(), auth.Request{
			Mechanism: mech, Initial: base64.StdEncoding.EncodeToString([]byte(msg)), HasInitial: true,
			Transport: noTransport{t}, Tokens: v,
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	good := "alice\x00" + string(initiator)
	if out := run(auth.MechHTNone, good, verifier(nil)); !out.Success() || out.User != "alice" || !bytes.Equal(out.AdditionalData, responder) {
		t.Fatalf("good token: %+v", out)
	}
	if out := run(auth.MechHTNone, "ALICE@"+domain+"\x00"+string(initiator), verifier(nil)); !out.Success() || out.User != "alice" {
		t.Fatalf("bare JID authcid: %+v", out)
	}
	wrong, _ := auth.HTProof(auth.TokenKey(token+"x"), nil)
	for _, tc := range []struct {
		name, mech, msg string
		v               auth.TokenVerifier
		want            string
	}{
		{"wrong token", auth.MechHTNone, "alice\x00" + string(wrong), verifier(nil), "not-authorized"},
		{"expired", auth.MechHTNone, good, verifier(auth.ErrCredentialsExpired), "credentials-expired"},
		{"lookup error", auth.MechHTNone, good, verifier(errors.New("disk on fire")), "temporary-auth-failure"},
		{"no verifier (classic SASL)", auth.MechHTNone, good, nil, "invalid-mechanism"},
		{"not offered", auth.MechHTExpr, good, verifier(nil), "invalid-mechanism"},
		{"short proof", auth.MechHTNone, "alice\x00abc", verifier(nil), "malformed-request"},
		{"no authcid", auth.MechHTNone, "\x00" + string(initiator), verifier(nil), "malformed-request"},
	} {
		if out := run(tc.mech, tc.msg, tc.v); out.Condition != tc.want {
			t.Errorf("%s: got %+v, want %s", tc.name, out, tc.want)
		}
	}
}
