package webui

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/tlsutil"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// withServer gives the UI a real XMPP server on loopback (sharing the
// env's store and clock); its address goes to *addr.
func withServer(t *testing.T, addr *string) func(*Config) {
	return func(c *Config) {
		cert, err := tlsutil.LoadOrCreateSelfSigned(filepath.Join(t.TempDir(), "tls"), c.Domain)
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(server.Config{Domain: c.Domain, Store: c.Store, Certificate: cert, Version: "1.2.3-test", Now: c.Now, Logger: c.Logger})
		if err != nil {
			t.Fatal(err)
		}
		a, err := srv.ListenC2S(context.Background(), "127.0.0.1:0", false)
		if err != nil {
			t.Fatal(err)
		}
		*addr = a.String()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
		c.Server = srv
		c.DataDir = t.TempDir()
	}
}

// user creates an account with password "NAME password".
func (e *env) user(name string) {
	e.t.Helper()
	if err := account.Create(context.Background(), e.st, name, name+" password"); err != nil {
		e.t.Fatal(err)
	}
}

// xmppLogin connects name's device to the server at addr.
func (e *env) xmppLogin(addr, name, resource string) *xmpptest.Client {
	e.t.Helper()
	c := xmpptest.Dial(e.t, addr, "example.org")
	c.Login(name, name+" password", resource)
	c.Send("<presence/>")
	c.Expect(xmpptest.IsPresenceFrom(c.JID, ""))
	return c
}

func TestSystemPage(t *testing.T) {
	var addr string
	e := newEnv(t, withServer(t, &addr))
	a := e.loggedIn("root")
	ctx := context.Background()
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		e.user(u)
	}
	e.xmppLogin(addr, "alice", "phone")
	e.xmppLogin(addr, "alice", "laptop")
	now := e.clock.Now()
	e.st.SetLastActivity(ctx, "bob", now.Add(-3*24*time.Hour), "")
	e.st.SetLastActivity(ctx, "carol", now.Add(-20*24*time.Hour), "")
	e.st.SetLastActivity(ctx, "root", now.Add(-40*24*time.Hour), "")

	rec := a.do("GET", "/admin/system", nil)
	wantCode(t, rec, 200, "Hearth 1.2.3-test", "Running for", "Memory", "resident", "taken from the system",
		"Disk", " free of ", "Database", "Shared files</th><td>0 files, 0 bytes",
		"Accounts</th><td>5<", "Connected devices</th><td>2<",
		"online now</td><td>1<", "in the last 24 hours</td><td>1<", "in the last 7 days</td><td>2<", "in the last 30 days</td><td>3<",
		"Certificate", "self-signed", "Dynamic DNS")
	if strings.Contains(rec.Body.String(), "<script") {
		t.Fatal("script on the system page")
	}
	// Administrators only.
	if rec := e.browser(internet, true).do("GET", "/admin/system", nil); rec.Code != http.StatusSeeOther {
		t.Fatalf("system page without login: %d", rec.Code)
	}
}

func TestHumanUnits(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{{0, "0 bytes"}, {1023, "1023 bytes"}, {1536, "1.5 KiB"}, {5 << 30, "5.0 GiB"}} {
		if got := humanBytes(c.n); got != c.want {
			t.Errorf("humanBytes(%d) = %q, want %q", c.n, got, c.want)
		}
	}
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{20 * time.Second, "less than a minute"}, {61 * time.Minute, "1 hour, 1 minute"}, {50 * time.Hour, "2 days, 2 hours"}} {
		if got := humanDuration(c.d); got != c.want {
			t.Errorf("humanDuration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}
