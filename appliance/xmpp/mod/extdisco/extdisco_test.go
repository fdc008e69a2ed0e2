package extdisco

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/turn"
	"github.com/pion/logging"
	pion "github.com/pion/turn/v3"
)

const secret = "shared-secret-for-tests"

func setup(t *testing.T, cfg Config) (*modtest.Env, *modtest.Client) {
	t.Helper()
	e := modtest.New(t)
	if cfg.Secret == "" {
		cfg.Secret = secret
	}
	if err := Register(e.S, cfg); err != nil {
		t.Fatal(err)
	}
	e.AddUser("alice", "pw-alice")
	return e, e.Connect("alice", "pw-alice")
}

// services returns the <service/> children of a result, failing on an
// error.
func services(t *testing.T, iq *xmlel.Element, name string) (*xmlel.Element, []*xmlel.Element) {
	t.Helper()
	if iq.Get("type") != "result" {
		t.Fatalf("got %s", iq)
	}
	p := iq.Child(NS, name)
	if p == nil {
		t.Fatalf("no <%s/> in %s", name, iq)
	}
	return p, p.ChildrenNamed(NS, "service")
}

func key(s *xmlel.Element) string {
	return s.Get("type") + "/" + s.Get("transport") + "/" + s.Get("host") + ":" + s.Get("port")
}

func TestAllServices(t *testing.T) {
	e, c := setup(t, Config{Host: "turn.example.org", Port: 3478, TLSPort: 5349})
	now := e.Clock.Now()
	_, list := services(t, c.Request("get", modtest.Domain, `<services xmlns='urn:xmpp:extdisco:2'/>`), "services")
	var got []string
	for _, s := range list {
		got = append(got, key(s))
	}
	want := []string{"stun/udp/turn.example.org:3478", "turn/udp/turn.example.org:3478", "turn/tcp/turn.example.org:3478", "turns/tcp/turn.example.org:5349"}
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	if s := list[0]; s.Has("username") || s.Has("password") || s.Has("restricted") {
		t.Errorf("STUN service carries credentials: %s", s)
	}
	wantExp := now.Add(DefaultTTL).UTC().Format("2006-01-02T15:04:05Z")
	for _, s := range list[1:] {
		user, pass := s.Get("username"), s.Get("password")
		if s.Get("restricted") != "1" || s.Get("expires") != wantExp {
			t.Errorf("%s: restricted=%q expires=%q, want 1 and %s", key(s), s.Get("restricted"), s.Get("expires"), wantExp)
		}
		if want := strconv.FormatInt(now.Add(DefaultTTL).Unix(), 10) + ":alice"; user != want {
			t.Errorf("%s: username %q, want %q", key(s), user, want)
		}
		if !turn.Verify(secret, user, pass, now) {
			t.Errorf("%s: credentials do not verify against the secret", key(s))
		}
		exp, err := time.Parse(time.RFC3339, s.Get("expires"))
		if err != nil {
			t.Fatal(err)
		}
		if !turn.Verify(secret, user, pass, exp) || turn.Verify(secret, user, pass, exp.Add(time.Second)) {
			t.Errorf("%s: credentials not valid exactly until 'expires'", key(s))
		}
	}
	// Without 'to' (the account's own) the server answers too.
	if _, l := services(t, c.Request("get", "", `<services xmlns='urn:xmpp:extdisco:2'/>`), "services"); len(l) != 4 {
		t.Errorf("request without 'to': %d services", len(l))
	}
	// Fresh credentials follow the clock.
	e.Clock.Advance(time.Hour)
	_, later := services(t, c.Request("get", modtest.Domain, `<services xmlns='urn:xmpp:extdisco:2' type='turn'/>`), "services")
	if exp, _ := turn.Expiry(later[0].Get("username")); !exp.Equal(now.Add(time.Hour + DefaultTTL)) {
		t.Errorf("credentials an hour later expire at %v", exp)
	}
}

func TestDefaultsAndTTL(t *testing.T) {
	e, c := setup(t, Config{TTL: 10 * time.Minute})
	_, list := services(t, c.Request("get", modtest.Domain, `<services xmlns='urn:xmpp:extdisco:2'/>`), "services")
	if len(list) != 3 {
		t.Fatalf("%d services, want 3 without TLS", len(list))
	}
	for _, s := range list {
		if s.Get("host") != modtest.Domain || s.Get("port") != "3478" {
			t.Errorf("default host/port: %s", s)
		}
	}
	exp, _ := turn.Expiry(list[1].Get("username"))
	if !exp.Equal(e.Clock.Now().Add(10 * time.Minute)) {
		t.Errorf("expiry %v with a 10 minute TTL", exp)
	}
	if _, feats, _ := e.S.DiscoInfo(server.ToServer); !slices.Contains(feats, NS) {
		t.Errorf("disco#info features %v lack %s", feats, NS)
	}
}

func TestTypeFilter(t *testing.T) {
	_, c := setup(t, Config{TLSPort: 5349})
	for typ, want := range map[string][]string{
		"turn":  {"turn/udp/example.org:3478", "turn/tcp/example.org:3478"},
		"turns": {"turns/tcp/example.org:5349"},
		"stun":  {"stun/udp/example.org:3478"},
		"ftp":   nil,
	} {
		p, list := services(t, c.Request("get", modtest.Domain, `<services xmlns='urn:xmpp:extdisco:2' type='`+typ+`'/>`), "services")
		var got []string
		for _, s := range list {
			got = append(got, key(s))
		}
		if !slices.Equal(got, want) || p.Get("type") != typ {
			t.Errorf("type %s: %v (type=%q), want %v", typ, got, p.Get("type"), want)
		}
	}
}

func TestCredentialsRequest(t *testing.T) {
	e, c := setup(t, Config{Host: "turn.example.org", TLSPort: 5349})
	_, list := services(t, c.Request("get", modtest.Domain,
		`<credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.example.org' type='turn'/></credentials>`), "credentials")
	if len(list) != 2 {
		t.Fatalf("%d services, want turn over udp and tcp", len(list))
	}
	for _, s := range list {
		if s.Get("type") != "turn" || !turn.Verify(secret, s.Get("username"), s.Get("password"), e.Clock.Now()) {
			t.Errorf("bad credentials service %s", s)
		}
	}
	// A port narrows it; the host is case-insensitive; several services at once.
	_, list = services(t, c.Request("get", modtest.Domain,
		`<credentials xmlns='urn:xmpp:extdisco:2'><service host='TURN.example.org' type='turns' port='5349'/><service host='turn.example.org' type='stun'/></credentials>`), "credentials")
	if len(list) != 2 || list[0].Get("type") != "stun" || list[1].Get("type") != "turns" || list[1].Get("password") == "" {
		t.Fatalf("got %v", list)
	}
	for _, p := range []string{
		`<credentials xmlns='urn:xmpp:extdisco:2'><service host='other.example' type='turn'/></credentials>`,
		`<credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.example.org' type='turn' port='9999'/></credentials>`,
		`<credentials xmlns='urn:xmpp:extdisco:2'><service host='turn.example.org' type='ftp'/></credentials>`,
	} {
		modtest.WantIQError(t, c.Request("get", modtest.Domain, p), "item-not-found")
	}
}

func TestBadRequests(t *testing.T) {
	_, c := setup(t, Config{})
	for _, p := range []string{
		`<services xmlns='urn:xmpp:extdisco:2' type=''/>`,
		`<services xmlns='urn:xmpp:extdisco:2' type='tu rn'/>`,
		`<services xmlns='urn:xmpp:extdisco:2'><service host='x' type='turn'/></services>`,
		`<credentials xmlns='urn:xmpp:extdisco:2'/>`,
		`<credentials xmlns='urn:xmpp:extdisco:2'><service type='turn'/></credentials>`,
		`<credentials xmlns='urn:xmpp:extdisco:2'><service host='example.org'/></credentials>`,
		`<credentials xmlns='urn:xmpp:extdisco:2'><service host='example.org' type='turn' port='http'/></credentials>`,
		`<credentials xmlns='urn:xmpp:extdisco:2'><service host='example.org' type='turn' port='70000'/></credentials>`,
		`<credentials xmlns='urn:xmpp:extdisco:2'><other xmlns='urn:example'/></credentials>`,
	} {
		modtest.WantIQError(t, c.Request("get", modtest.Domain, p), "bad-request")
	}
}

func TestOnlyLocalAccounts(t *testing.T) {
	e := modtest.New(t)
	h := &handler{s: e.S, cfg: Config{Host: "example.org", Port: 3478, Secret: secret, TTL: time.Hour}}
	for _, from := range []string{"mallory@elsewhere.example/x", "example.org"} {
		_, err := h.services(context.Background(), e.IQ("get", from, modtest.Domain, `<services xmlns='urn:xmpp:extdisco:2'/>`))
		modtest.WantCondition(t, err, "forbidden")
		_, err = h.credentials(context.Background(), e.IQ("get", from, modtest.Domain,
			`<credentials xmlns='urn:xmpp:extdisco:2'><service host='example.org' type='turn'/></credentials>`))
		modtest.WantCondition(t, err, "forbidden")
	}
	if err := Register(e.S, Config{}); err == nil {
		t.Fatal("Register without a secret succeeded")
	}
}

type quietPion struct{}

func (quietPion) NewLogger(string) logging.LeveledLogger {
	f := logging.NewDefaultLoggerFactory()
	f.Writer = io.Discard
	return f.NewLogger("turnc")
}

// TestCredentialsWorkOnHearthTURN allocates a relay on Hearth's own TURN
// server with the credentials a client got over XMPP.
func TestCredentialsWorkOnHearthTURN(t *testing.T) {
	e := modtest.New(t)
	srv, err := turn.Start(turn.Config{
		Realm: modtest.Domain, Secret: secret, ListenAddrs: []string{"127.0.0.1"},
		RelayMinPort: 41000, RelayMaxPort: 41999, Now: e.Clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := Register(e.S, Config{Host: "127.0.0.1", Port: srv.Port(), Secret: secret}); err != nil {
		t.Fatal(err)
	}
	e.AddUser("alice", "pw-alice")
	c := e.Connect("alice", "pw-alice")
	_, list := services(t, c.Request("get", modtest.Domain, `<services xmlns='urn:xmpp:extdisco:2' type='turn'/>`), "services")
	s := list[0]
	allocate := func(user, pass string) error {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		addr := net.JoinHostPort(s.Get("host"), s.Get("port"))
		cl, err := pion.NewClient(&pion.ClientConfig{TURNServerAddr: addr, Conn: conn, Username: user, Password: pass,
			LoggerFactory: quietPion{}, RTO: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Listen(); err != nil {
			t.Fatal(err)
		}
		relay, err := cl.Allocate()
		if err == nil {
			relay.Close()
		}
		return err
	}
	if err := allocate(s.Get("username"), s.Get("password")); err != nil {
		t.Fatalf("allocation with XEP-0215 credentials failed: %v", err)
	}
	if err := allocate(s.Get("username"), strings.ToUpper(s.Get("password"))); err == nil {
		t.Fatal("allocation with a wrong password succeeded")
	}
	// Once 'expires' has passed, the TURN server refuses them.
	e.Clock.Advance(DefaultTTL + time.Second)
	if err := allocate(s.Get("username"), s.Get("password")); err == nil {
		t.Fatal("allocation with expired credentials succeeded")
	}
}
