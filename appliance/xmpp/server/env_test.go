package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/auth"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

const domain = "example.test"

// env is an in-process server on loopback with a fresh store.
type env struct {
	t        *testing.T
	srv      *server.Server
	store    *store.Store
	addr     string // STARTTLS port
	tlsAddr  string // direct TLS port
	dir      string
	logs     *syncBuffer
	shutdown func()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T, limits server.Limits, setup ...func(*server.Server)) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tlsutil.LoadOrCreateSelfSigned(filepath.Join(dir, "tls"), domain)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := server.New(server.Config{
		Domain: domain, Store: st, Certificate: cert, Limits: limits,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(srv)
	}
	ctx := context.Background()
	a, err := srv.ListenC2S(ctx, "127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	ta, err := srv.ListenC2S(ctx, "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, store: st, addr: a.String(), tlsAddr: ta.String(), dir: dir, logs: logs}
	var once sync.Once
	e.shutdown = func() {
		once.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			st.Close()
		})
	}
	t.Cleanup(func() {
		e.shutdown()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return e
}

// addUser creates an account with the given password.
func (e *env) addUser(name, password string) {
	e.t.Helper()
	creds, err := auth.DeriveCredentials(password, auth.DefaultIterations)
	if err != nil {
		e.t.Fatal(err)
	}
	keys := make([]store.ScramKey, len(creds))
	for i, c := range creds {
		keys[i] = store.ScramKey{Hash: c.Hash, Salt: c.Salt, Iterations: c.Iterations, StoredKey: c.StoredKey, ServerKey: c.ServerKey}
	}
	if err := e.store.CreateAccount(context.Background(), name, keys); err != nil {
		e.t.Fatal(err)
	}
}

// login connects and binds user/resource; the session is not yet available.
func (e *env) login(user, resource string) *xmpptest.Client {
	e.t.Helper()
	c := xmpptest.Dial(e.t, e.addr, domain)
	c.Login(user, "pw-"+user, resource)
	return c
}

// online logs in, sends initial presence and waits for its reflection.
func (e *env) online(user, resource string) *xmpptest.Client {
	e.t.Helper()
	c := e.login(user, resource)
	c.Send("<presence/>")
	c.Expect(xmpptest.IsPresenceFrom(c.JID, ""))
	return c
}
