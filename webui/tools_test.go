package webui

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/backup"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

func TestAnnouncement(t *testing.T) {
	var addr string
	e := newEnv(t, withServer(t, &addr), func(c *Config) { c.DeletionGrace = time.Hour })
	a := e.loggedIn("root")
	ctx := context.Background()
	for _, u := range []string{"mum", "kid", "gone"} {
		e.user(u)
	}
	mumPhone := e.xmppLogin(addr, "mum", "phone")
	mumLaptop := e.xmppLogin(addr, "mum", "laptop")
	a.post("/admin/users", "/admin/users/delete", url.Values{"username": {"gone"}, "confirm": {"gone"}})

	form := url.Values{"subject": {"Maintenance"}, "body": {"Hearth restarts tonight.\nBack in 5 minutes."}}
	wantCode(t, a.do("POST", "/admin/announce", form), http.StatusForbidden)
	wantCode(t, a.post("/admin/announce", "/admin/announce", url.Values{"body": {"  "}}), http.StatusBadRequest, "Write the announcement")
	wantCode(t, a.post("/admin/announce", "/admin/announce", url.Values{"subject": {"a\nb"}, "body": {"x"}}), http.StatusBadRequest)
	rec := a.post("/admin/announce", "/admin/announce", form)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/announce?sent=3" {
		t.Fatalf("announce: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	wantCode(t, a.do("GET", "/admin/announce?sent=3", nil), 200, "went to 3 accounts")
	// Online: at once (to the highest-priority devices: both, at priority 0).
	for _, c := range []*xmpptest.Client{mumPhone, mumLaptop} {
		m := c.Expect(xmpptest.IsMessage("Hearth restarts tonight.\nBack in 5 minutes."))
		if m.Get("from") != "example.org" || m.ChildText("jabber:client", "subject") != "Maintenance" {
			t.Fatalf("announcement: %s", m)
		}
	}
	// Offline: kept for the next login; the locked account gets none.
	if msgs, _ := e.st.OfflineMessages(ctx, "kid"); len(msgs) != 1 || !strings.Contains(string(msgs[0].Stanza), "Hearth restarts tonight.") {
		t.Fatalf("kid's offline messages: %v", msgs)
	}
	if msgs, _ := e.st.OfflineMessages(ctx, "gone"); len(msgs) != 0 {
		t.Fatal("the locked account got the announcement")
	}
	kid := e.xmppLogin(addr, "kid", "tablet")
	kid.Expect(xmpptest.IsMessage("Hearth restarts tonight.\nBack in 5 minutes."))
}

func TestCircles(t *testing.T) {
	e := newEnv(t)
	a := e.loggedIn("root")
	ctx := context.Background()
	e.user("mum")
	e.user("kid")
	wantCode(t, a.do("GET", "/admin/circles", nil), 200, "No circles yet", `<option value="kid">kid@example.org</option>`)
	join := url.Values{"circle": {"Family"}, "username": {"mum"}}
	wantCode(t, a.do("POST", "/admin/circles/join", join), http.StatusForbidden)
	if rec := a.post("/admin/circles", "/admin/circles/join", join); rec.Code != http.StatusSeeOther {
		t.Fatalf("join: %d %s", rec.Code, rec.Body)
	}
	a.post("/admin/circles", "/admin/circles/join", url.Values{"circle": {"Family"}, "username": {"kid"}})
	if m, _ := e.st.CircleMembers(ctx, "Family"); strings.Join(m, ",") != "kid,mum" {
		t.Fatalf("members %v", m)
	}
	wantCode(t, a.do("GET", "/admin/circles?done=joined&user=kid&circle=Family", nil), 200, "kid joined Family.", "<strong>Family</strong>", "kid@example.org", `aria-label="Remove mum from Family"`)
	wantCode(t, a.post("/admin/circles", "/admin/circles/join", url.Values{"circle": {"Family"}, "username": {"nobody"}}), http.StatusNotFound)
	wantCode(t, a.post("/admin/circles", "/admin/circles/join", url.Values{"circle": {strings.Repeat("x", 101)}, "username": {"kid"}}), http.StatusBadRequest)
	if rec := a.post("/admin/circles", "/admin/circles/leave", url.Values{"circle": {"Family"}, "username": {"kid"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("leave: %d", rec.Code)
	}
	if m, _ := e.st.CircleMembers(ctx, "Family"); strings.Join(m, ",") != "mum" {
		t.Fatalf("members after leave %v", m)
	}
}

func TestBackupDownload(t *testing.T) {
	dir := t.TempDir()
	e := newEnvAt(t, dir, func(c *Config) { c.DataDir = dir })
	a := e.loggedIn("root")
	os.MkdirAll(filepath.Join(dir, "uploads", "files"), 0o700)
	os.WriteFile(filepath.Join(dir, "uploads", "files", "f1"), []byte("file"), 0o600)
	os.MkdirAll(filepath.Join(dir, "tls"), 0o700)
	os.WriteFile(filepath.Join(dir, "tls", "key.pem"), []byte("KEY"), 0o600)

	wantCode(t, a.do("GET", "/admin/backup", nil), 200, "Download backup", "Include shared files")
	wantCode(t, a.do("POST", "/admin/backup", url.Values{"uploads": {"1"}}), http.StatusForbidden)
	if rec := e.browser(internet, true).do("POST", "/admin/backup", url.Values{}); rec.Code != http.StatusForbidden {
		t.Fatalf("backup without login: %d", rec.Code)
	}
	rec := a.post("/admin/backup", "/admin/backup", url.Values{"uploads": {"1"}})
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/gzip" ||
		rec.Header().Get("Content-Disposition") != `attachment; filename="hearth-example.org-2025-03-01-1200.tar.gz"` {
		t.Fatalf("backup: %d %v", rec.Code, rec.Header())
	}
	gz, err := gzip.NewReader(bytes.NewReader(rec.Body.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	var db []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == backup.DBName {
			db, _ = io.ReadAll(tr)
		}
	}
	if strings.Join(names, " ") != "hearth.db tls/key.pem uploads/files/f1" {
		t.Fatalf("entries %v", names)
	}
	p := filepath.Join(t.TempDir(), "restored.db")
	os.WriteFile(p, db, 0o600)
	st, err := store.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ok, _ := st.AccountExists(context.Background(), "root"); !ok {
		t.Fatal("the backup lacks root")
	}
}

// fakeChat is a group chat backend of circles that records its calls.
type fakeChat struct {
	mu    sync.Mutex
	calls []string
	fail  error
}

func (f *fakeChat) record(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	return f.fail
}

func (f *fakeChat) CreateRoom(_ context.Context, circle string) (string, error) {
	if err := f.record("create " + circle); err != nil {
		return "", err
	}
	return strings.ToLower(circle) + "@rooms.example.org", nil
}
func (f *fakeChat) DestroyRoom(_ context.Context, room string) error {
	return f.record("destroy " + room)
}
func (f *fakeChat) AddMember(_ context.Context, room, _, user string) error {
	return f.record("add " + user + " " + room)
}
func (f *fakeChat) RemoveMember(_ context.Context, room, user string) error {
	return f.record("remove " + user + " " + room)
}

func (f *fakeChat) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, "; ")
}

func (f *fakeChat) reset() {
	f.mu.Lock()
	f.calls = nil
	f.mu.Unlock()
}

// withChat gives the UI an invitation service with chat as its group chat
// backend.
func withChat(chat invite.GroupChat) func(*Config) {
	return func(c *Config) {
		c.Invites = invite.New(invite.Config{Store: c.Store, Domain: c.Domain, Now: c.Now, Logger: c.Logger, GroupChat: chat})
	}
}

func TestCircleCreateDelete(t *testing.T) {
	chat := &fakeChat{}
	e := newEnv(t, withChat(chat))
	ctx := context.Background()
	a := e.loggedIn("root")
	e.user("mum")
	e.user("kid")
	wantCode(t, a.do("GET", "/admin/circles", nil), 200, `action="/admin/circles/create"`, `name="chat"`)

	// Refused without the CSRF token, and for an account that is not an
	// administrator.
	create := url.Values{"name": {"Family"}, "chat": {"1"}}
	wantCode(t, a.do("POST", "/admin/circles/create", create), http.StatusForbidden)
	k := e.userLogin("kid")
	wantCode(t, k.post("/account", "/admin/circles/create", create), http.StatusForbidden, "Not an administrator")
	if cs, _ := e.st.Circles(ctx); len(cs) != 0 {
		t.Fatalf("circle created by a refused request: %v", cs)
	}

	// Created with its group chat, shown with the room's JID.
	rec := a.post("/admin/circles", "/admin/circles/create", create)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/circles?done=created&circle=Family" {
		t.Fatalf("create: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	wantCode(t, a.do("GET", "/admin/circles?done=created&circle=Family", nil), 200, "The circle Family is created",
		"Group chat: <code>family@rooms.example.org</code>", "Delete the circle Family…")
	if chat.log() != "create Family" {
		t.Fatalf("backend calls: %s", chat.log())
	}
	// Errors are form messages.
	wantCode(t, a.post("/admin/circles", "/admin/circles/create", create), http.StatusConflict, "already a circle named Family")
	wantCode(t, a.post("/admin/circles", "/admin/circles/create", url.Values{"name": {strings.Repeat("x", 101)}}), http.StatusBadRequest, "1 to 100 characters")
	chat.fail = errors.New("muc down")
	wantCode(t, a.post("/admin/circles", "/admin/circles/create", url.Values{"name": {"Friends"}, "chat": {"1"}}), http.StatusInternalServerError, "could not be created")
	chat.fail = nil
	// Without a chat: no backend call.
	if rec := a.post("/admin/circles", "/admin/circles/create", url.Values{"name": {"Friends"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("create without chat: %d %s", rec.Code, rec.Body)
	}
	if c, err := e.st.Circle(ctx, "Friends"); err != nil || c.Room != "" {
		t.Fatalf("Friends = %+v, %v", c, err)
	}

	a.post("/admin/circles", "/admin/circles/join", url.Values{"circle": {"Family"}, "username": {"mum"}})
	a.post("/admin/circles", "/admin/circles/join", url.Values{"circle": {"Family"}, "username": {"kid"}})
	// Leave goes through the service: out of the room too.
	if rec := a.post("/admin/circles", "/admin/circles/leave", url.Values{"circle": {"Family"}, "username": {"kid"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("leave: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(chat.log(), "remove kid family@rooms.example.org") {
		t.Fatalf("leave did not reach the room: %s", chat.log())
	}
	wantCode(t, a.post("/admin/circles", "/admin/circles/leave", url.Values{"circle": {"Nope"}, "username": {"kid"}}), http.StatusNotFound, "No such circle")

	// Delete: a confirmation step first, which changes nothing.
	del := url.Values{"name": {"Family"}}
	wantCode(t, a.do("POST", "/admin/circles/delete", del), http.StatusForbidden)
	wantCode(t, k.post("/account", "/admin/circles/delete", url.Values{"name": {"Family"}, "confirm": {"1"}}), http.StatusForbidden)
	wantCode(t, a.post("/admin/circles", "/admin/circles/delete", del), 200, "Delete the circle Family?", "mum leaves it.",
		"Its group chat <code>family@rooms.example.org</code> is closed", "Yes, delete Family", `name="confirm" value="1"`)
	if _, err := e.st.Circle(ctx, "Family"); err != nil {
		t.Fatalf("the circle went before the confirmation: %v", err)
	}
	wantCode(t, a.post("/admin/circles", "/admin/circles/delete", url.Values{"name": {"Nope"}}), http.StatusNotFound, "No such circle")
	wantCode(t, a.post("/admin/circles", "/admin/circles/delete", url.Values{"name": {"Nope"}, "confirm": {"1"}}), http.StatusNotFound, "No such circle")
	chat.fail = errors.New("muc down")
	wantCode(t, a.post("/admin/circles", "/admin/circles/delete", url.Values{"name": {"Family"}, "confirm": {"1"}}), http.StatusInternalServerError, "could not be deleted")
	chat.fail = nil
	rec = a.post("/admin/circles", "/admin/circles/delete", url.Values{"name": {"Family"}, "confirm": {"1"}})
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/circles?done=deleted&circle=Family" {
		t.Fatalf("delete: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	if _, err := e.st.Circle(ctx, "Family"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Family after delete: %v", err)
	}
	if !strings.Contains(chat.log(), "destroy family@rooms.example.org") {
		t.Fatalf("the room was not destroyed: %s", chat.log())
	}
	wantCode(t, a.do("GET", "/admin/circles?done=deleted&circle=Family", nil), 200, "The circle Family is deleted. Its members stay in each other")
	if !strings.Contains(e.logs.String(), `circle deleted" circle=Family by=root`) {
		t.Fatalf("log:\n%s", e.logs)
	}
}

func TestCircleChatUnavailable(t *testing.T) {
	e := newEnv(t)
	a := e.loggedIn("root")
	wantCode(t, a.post("/admin/circles", "/admin/circles/create", url.Values{"name": {"Family"}, "chat": {"1"}}), http.StatusConflict, "Group chats are not available")
	if _, err := e.st.Circle(context.Background(), "Family"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("circle created: %v", err)
	}
}

func TestCircleChatToggle(t *testing.T) {
	chat := &fakeChat{}
	e := newEnv(t, withChat(chat))
	ctx := context.Background()
	a := e.loggedIn("root")
	e.user("mum")
	e.user("kid")
	// A circle made by joining has no chat: the page offers one.
	a.post("/admin/circles", "/admin/circles/join", url.Values{"circle": {"Family"}, "username": {"mum"}})
	a.post("/admin/circles", "/admin/circles/join", url.Values{"circle": {"Family"}, "username": {"kid"}})
	wantCode(t, a.do("GET", "/admin/circles", nil), 200, `action="/admin/circles/chat"`, `name="on" value="1"`, `aria-label="Add a group chat to Family"`, ">Add a group chat<")

	on := url.Values{"name": {"Family"}, "on": {"1"}}
	wantCode(t, a.do("POST", "/admin/circles/chat", on), http.StatusForbidden)
	k := e.userLogin("kid")
	wantCode(t, k.post("/account", "/admin/circles/chat", on), http.StatusForbidden, "Not an administrator")
	if chat.log() != "" {
		t.Fatalf("backend calls from refused requests: %s", chat.log())
	}
	chat.fail = errors.New("muc down")
	wantCode(t, a.post("/admin/circles", "/admin/circles/chat", on), http.StatusInternalServerError, "could not be created")
	chat.fail = nil
	chat.reset()
	rec := a.post("/admin/circles", "/admin/circles/chat", on)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/circles?done=chat-on&circle=Family" {
		t.Fatalf("chat on: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	if got := chat.log(); got != "create Family; add kid family@rooms.example.org; add mum family@rooms.example.org" {
		t.Fatalf("backend calls: %s", got)
	}
	if c, err := e.st.Circle(ctx, "Family"); err != nil || c.Room != "family@rooms.example.org" {
		t.Fatalf("Family = %+v, %v", c, err)
	}
	wantCode(t, a.do("GET", "/admin/circles?done=chat-on&circle=Family", nil), 200, "The circle Family has a group chat now",
		"Group chat: <code>family@rooms.example.org</code>", `name="on" value="0"`, "Close the group chat…")
	wantCode(t, a.post("/admin/circles", "/admin/circles/chat", url.Values{"name": {"Nope"}, "on": {"1"}}), http.StatusNotFound, "No such circle")

	// Closing asks first, and that changes nothing.
	chat.reset()
	off := url.Values{"name": {"Family"}, "on": {"0"}}
	wantCode(t, a.post("/admin/circles", "/admin/circles/chat", off), 200, "Close the group chat of Family?",
		"The group chat <code>family@rooms.example.org</code> is closed for everybody", "Yes, close the group chat", `name="confirm" value="1"`)
	wantCode(t, a.post("/admin/circles", "/admin/circles/chat", url.Values{"name": {"Nope"}, "on": {"0"}}), http.StatusNotFound, "No such circle")
	if c, _ := e.st.Circle(ctx, "Family"); c.Room == "" || chat.log() != "" {
		t.Fatalf("changed before the confirmation: %+v %s", c, chat.log())
	}
	off.Set("confirm", "1")
	wantCode(t, k.post("/account", "/admin/circles/chat", off), http.StatusForbidden)
	rec = a.post("/admin/circles", "/admin/circles/chat", off)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/admin/circles?done=chat-off&circle=Family" {
		t.Fatalf("chat off: %d %q %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	if got := chat.log(); got != "destroy family@rooms.example.org; remove kid family@rooms.example.org; remove mum family@rooms.example.org" {
		t.Fatalf("backend calls: %s", got)
	}
	if c, err := e.st.Circle(ctx, "Family"); err != nil || c.Room != "" || len(c.Members) != 2 {
		t.Fatalf("Family after closing = %+v, %v", c, err)
	}
	wantCode(t, a.do("GET", "/admin/circles?done=chat-off&circle=Family", nil), 200, "The group chat of Family is closed.", ">Add a group chat<")
	if !strings.Contains(e.logs.String(), `circle group chat changed" circle=Family chat=false by=root`) {
		t.Fatalf("log:\n%s", e.logs)
	}
}

func TestCircleChatToggleUnavailable(t *testing.T) {
	e := newEnv(t)
	a := e.loggedIn("root")
	e.user("mum")
	a.post("/admin/circles", "/admin/circles/join", url.Values{"circle": {"Family"}, "username": {"mum"}})
	wantCode(t, a.post("/admin/circles", "/admin/circles/chat", url.Values{"name": {"Family"}, "on": {"1"}}), http.StatusConflict, "Group chats are not available")
	if c, _ := e.st.Circle(context.Background(), "Family"); c.Room != "" {
		t.Fatalf("Family = %+v", c)
	}
}
