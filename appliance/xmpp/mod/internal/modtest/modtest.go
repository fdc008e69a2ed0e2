// Package modtest provides the test environment shared by the feature
// modules' tests: a real server.Server backed by a real store in a temporary
// directory, with a controllable clock, helpers to create accounts and roster
// items, to build IQ requests for calling handlers directly, and a real
// client connection (STARTTLS, SASL PLAIN, resource binding) for end-to-end
// checks of what a module registered.
package modtest

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// Domain is the domain served by test servers.
const Domain = "example.org"

// Start is the initial time of an Env's clock.
var Start = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Clock is a settable clock for server.Config.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Env is one test server with its store and clock.
type Env struct {
	T     testing.TB
	S     *server.Server
	Store *store.Store
	Clock *Clock

	listenOnce sync.Once
	addr       string
}

// New returns an Env whose server serves Domain, with its store in
// t.TempDir(), a self-signed certificate, logs discarded and the clock at
// Start. Everything is released when the test ends. mod, if given, adjusts
// the configuration before server.New.
func New(t testing.TB, mod ...func(*server.Config)) *Env {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cert := Certificate(t)
	clock := &Clock{t: Start}
	cfg := server.Config{
		Domain:      Domain,
		Store:       st,
		Certificate: &cert,
		Version:     "1.2.3-test",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:         clock.Now,
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, S: s, Store: st, Clock: clock}
}

// Certificate returns the self-signed certificate Hearth itself generates
// (tlsutil), for Domain.
func Certificate(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := tlsutil.LoadOrCreateSelfSigned(t.TempDir(), Domain)
	if err != nil {
		t.Fatal(err)
	}
	return *c
}

// AddUser creates the account name with password.
func (e *Env) AddUser(name, password string) {
	e.T.Helper()
	creds, err := auth.DeriveCredentials(password, 0)
	if err != nil {
		e.T.Fatal(err)
	}
	keys := make([]store.ScramKey, len(creds))
	for i, c := range creds {
		keys[i] = store.ScramKey{Hash: c.Hash, Salt: c.Salt, Iterations: c.Iterations, StoredKey: c.StoredKey, ServerKey: c.ServerKey}
	}
	if err := e.Store.CreateAccount(context.Background(), name, keys); err != nil {
		e.T.Fatal(err)
	}
}

// Subscribe puts contact (a bare JID) in owner's roster with subscription
// sub ("none", "to", "from" or "both").
func (e *Env) Subscribe(owner, contact, sub string) {
	e.T.Helper()
	if _, err := e.Store.PutRosterItem(context.Background(), owner, store.RosterItem{JID: contact, Subscription: sub}); err != nil {
		e.T.Fatal(err)
	}
}

// IQ builds a request as the router hands it to a handler: from is the
// requester's full JID, to the 'to' attribute ("" for none, which addresses
// the requester's own account, RFC 6120 §10.3.3), payload the child element.
func (e *Env) IQ(typ, from, to, payload string) *server.IQ {
	e.T.Helper()
	f, err := jid.Parse(from)
	if err != nil {
		e.T.Fatal(err)
	}
	target := f.Bare()
	st := xmlel.New(server.NSClient, "iq", "type", typ, "id", "t1", "from", from)
	if to != "" {
		if target, err = jid.Parse(to); err != nil {
			e.T.Fatal(err)
		}
		st.Set("to", to)
	}
	p, err := xmlel.Parse(payload)
	if err != nil {
		e.T.Fatal(err)
	}
	st.Add(p)
	return &server.IQ{Stanza: st, Payload: p, Type: typ, From: f, To: target}
}

// Condition returns the stanza error condition of a handler's error, "" for
// nil, or "internal-server-error" for an error that is no *server.StanzaError
// (which the server reports as such).
func Condition(err error) string {
	if err == nil {
		return ""
	}
	var se *server.StanzaError
	if errors.As(err, &se) {
		return string(se.Condition)
	}
	return "internal-server-error"
}

// WantCondition fails the test unless err carries the stanza error condition
// want ("" for no error).
func WantCondition(t testing.TB, err error, want string) {
	t.Helper()
	if got := Condition(err); got != want {
		t.Fatalf("error condition = %q (%v), want %q", got, err, want)
	}
}
