package invite

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/store"
)

// fakeChat records GroupChat calls; its rooms are "<slug>@groups.example.org".
// The real backend (muc.CircleChats) is tested with real clients in
// appliance/xmpp/mod/muc.
type fakeChat struct {
	mu      sync.Mutex
	calls   []string
	failNew error
}

func (f *fakeChat) log(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }

func (f *fakeChat) CreateRoom(_ context.Context, circle string) (string, error) {
	f.log("create " + circle)
	if f.failNew != nil {
		return "", f.failNew
	}
	return strings.ToLower(circle) + "@groups.example.org", nil
}

func (f *fakeChat) DestroyRoom(_ context.Context, room string) error {
	f.log("destroy " + room)
	return nil
}

func (f *fakeChat) AddMember(_ context.Context, room, circle, user string) error {
	f.log("add " + room + " " + circle + " " + user)
	return nil
}

func (f *fakeChat) RemoveMember(_ context.Context, room, user string) error {
	f.log("remove " + room + " " + user)
	return nil
}

func (f *fakeChat) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

func newChatService(t *testing.T) (*Service, *store.Store, *fakeChat, *pairs) {
	t.Helper()
	s, st, _, p := newService(t)
	f := &fakeChat{}
	s = New(Config{Store: st, Domain: "example.org", Roster: p, Now: s.now, GroupChat: f,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return s, st, f, p
}

func wantCalls(t *testing.T, f *fakeChat, want ...string) {
	t.Helper()
	if got := f.take(); !slices.Equal(got, want) {
		t.Fatalf("group chat calls:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCircleLifecycleWithChat(t *testing.T) {
	s, st, f, p := newChatService(t)
	ctx := context.Background()
	inv, err := s.Create(ctx, Options{Reusable: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann", "ben", "cat"} {
		if _, _, err := s.Redeem(ctx, inv.Token, u, "pass phrase", s.Now()); err != nil {
			t.Fatal(err)
		}
	}

	if err := s.CreateCircle(ctx, "Family", true); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "create Family")
	if err := s.CreateCircle(ctx, "Family", false); !errors.Is(err, store.ErrExists) {
		t.Fatalf("CreateCircle twice = %v, want ErrExists", err)
	}
	if err := s.CreateCircle(ctx, " bad", true); err == nil {
		t.Fatal("CreateCircle with an invalid name succeeded")
	}
	if err := s.CreateCircle(ctx, "Quiet", false); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f)
	circles, err := s.Circles(ctx)
	if err != nil || len(circles) != 2 || circles[0].Room != "family@groups.example.org" || circles[1].Room != "" {
		t.Fatalf("Circles = %+v, %v", circles, err)
	}

	// Joining: roster, then room membership and bookmark.
	for _, u := range []string{"ann", "ben"} {
		if err := s.JoinCircle(ctx, "Family", u); err != nil {
			t.Fatal(err)
		}
	}
	wantCalls(t, f, "add family@groups.example.org Family ann", "add family@groups.example.org Family ben")
	if err := s.JoinCircle(ctx, "Quiet", "cat"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f) // no chat
	if !slices.Contains(p.calls, "ben+ann/Family") {
		t.Fatalf("roster calls %v", p.calls)
	}

	// An invitation with the circle gives the newcomer the room too.
	inv2, err := s.Create(ctx, Options{Circles: []string{"Family", "Quiet"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Redeem(ctx, inv2.Token, "dan", "pass phrase", s.Now()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "add family@groups.example.org Family dan")

	// Leaving.
	if err := s.LeaveCircle(ctx, "Family", "ben"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "remove family@groups.example.org ben")
	if err := s.LeaveCircle(ctx, "Nope", "ben"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LeaveCircle of an unknown circle = %v", err)
	}

	// Deleting: the room first (occupants see the destruction), then the
	// members' bookmarks; the roster items stay.
	rosterBefore := len(p.calls)
	if err := s.DeleteCircle(ctx, "Family"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "destroy family@groups.example.org",
		"remove family@groups.example.org ann", "remove family@groups.example.org dan")
	if err := s.DeleteCircle(ctx, "Family"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteCircle twice = %v", err)
	}
	if m, _ := st.CircleMembers(ctx, "Family"); len(m) != 0 {
		t.Fatalf("members of the deleted circle: %v", m)
	}
	if len(p.calls) != rosterBefore {
		t.Fatalf("roster changed on delete: %v", p.calls[rosterBefore:])
	}
	if err := s.DeleteCircle(ctx, "Quiet"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f)
	if circles, _ := s.Circles(ctx); len(circles) != 0 {
		t.Fatalf("Circles after delete = %+v", circles)
	}
}

func TestCircleChatFailures(t *testing.T) {
	s, st, f, _ := newChatService(t)
	ctx := context.Background()
	f.failNew = errors.New("boom")
	if err := s.CreateCircle(ctx, "Family", true); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("CreateCircle with a failing backend = %v", err)
	}
	if _, err := st.Circle(ctx, "Family"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("circle created although its room was not: %v", err)
	}
	f.failNew = nil

	// An existing circle (made by an invitation) is refused before a room is made.
	if err := st.CreateCircle(ctx, "Race", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCircle(ctx, "Race", true); !errors.Is(err, store.ErrExists) {
		t.Fatalf("CreateCircle of an existing circle = %v", err)
	}
	wantCalls(t, f, "create Family")

	// Without a backend: no chats, and a circle with a room is not
	// deleted behind the room's back.
	plain := New(Config{Store: st, Domain: "example.org", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := plain.CreateCircle(ctx, "Chat", true); !errors.Is(err, ErrNoGroupChat) {
		t.Fatalf("CreateCircle with chat and no backend = %v", err)
	}
	if err := plain.CreateCircle(ctx, "Plain", false); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCircle(ctx, "Chat", true); err != nil {
		t.Fatal(err)
	}
	if err := plain.DeleteCircle(ctx, "Chat"); !errors.Is(err, ErrNoGroupChat) {
		t.Fatalf("DeleteCircle of a circle with a room and no backend = %v", err)
	}
	if err := plain.DeleteCircle(ctx, "Plain"); err != nil {
		t.Fatal(err)
	}
}

// TestSetCircleChat: a circle made by an invitation gets a group chat
// later, with its current members in it; closing it takes the room and
// the bookmarks away and keeps the circle; both are idempotent.
func TestSetCircleChat(t *testing.T) {
	s, st, f, p := newChatService(t)
	ctx := context.Background()
	inv, err := s.Create(ctx, Options{Reusable: true, Circles: []string{"Family"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann", "ben"} {
		if _, _, err := s.Redeem(ctx, inv.Token, u, "pass phrase", s.Now()); err != nil {
			t.Fatal(err)
		}
	}
	wantCalls(t, f) // the implicit circle has no chat

	if err := s.SetCircleChat(ctx, "Nope", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetCircleChat of an unknown circle = %v", err)
	}
	if err := s.SetCircleChat(ctx, "Family", false); err != nil {
		t.Fatalf("closing a chat that does not exist = %v", err)
	}
	wantCalls(t, f)

	// On: the room, recorded, then every current member in it.
	if err := s.SetCircleChat(ctx, "Family", true); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "create Family", "add family@groups.example.org Family ann", "add family@groups.example.org Family ben")
	if c, err := st.Circle(ctx, "Family"); err != nil || c.Room != "family@groups.example.org" {
		t.Fatalf("Family = %+v, %v", c, err)
	}
	if err := s.SetCircleChat(ctx, "Family", true); err != nil {
		t.Fatalf("opening the chat twice = %v", err)
	}
	wantCalls(t, f)
	// Later members get it like with CreateCircle.
	if _, _, err := s.Redeem(ctx, inv.Token, "cat", "pass phrase", s.Now()); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "add family@groups.example.org Family cat")

	// Off: the room goes first, then the members' bookmarks; the circle,
	// its members and their rosters stay.
	rosterBefore := len(p.calls)
	if err := s.SetCircleChat(ctx, "Family", false); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "destroy family@groups.example.org", "remove family@groups.example.org ann",
		"remove family@groups.example.org ben", "remove family@groups.example.org cat")
	c, err := st.Circle(ctx, "Family")
	if err != nil || c.Room != "" || strings.Join(c.Members, ",") != "ann,ben,cat" {
		t.Fatalf("Family after closing = %+v, %v", c, err)
	}
	if len(p.calls) != rosterBefore {
		t.Fatalf("roster changed when closing: %v", p.calls[rosterBefore:])
	}
	if err := s.SetCircleChat(ctx, "Family", false); err != nil {
		t.Fatalf("closing twice = %v", err)
	}
	wantCalls(t, f)
	// Members coming and going touch no room now.
	if err := s.LeaveCircle(ctx, "Family", "cat"); err != nil {
		t.Fatal(err)
	}
	if err := s.JoinCircle(ctx, "Family", "cat"); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f)

	// A failing backend changes nothing.
	f.failNew = errors.New("boom")
	if err := s.SetCircleChat(ctx, "Family", true); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("SetCircleChat with a failing backend = %v", err)
	}
	wantCalls(t, f, "create Family")
	if c, _ := st.Circle(ctx, "Family"); c.Room != "" {
		t.Fatalf("room recorded although not created: %+v", c)
	}

	// Without a backend: only the no-op is allowed.
	plain := New(Config{Store: st, Domain: "example.org", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := plain.SetCircleChat(ctx, "Family", true); !errors.Is(err, ErrNoGroupChat) {
		t.Fatalf("SetCircleChat on without a backend = %v", err)
	}
	if err := plain.SetCircleChat(ctx, "Family", false); err != nil {
		t.Fatalf("SetCircleChat off without a backend, no chat = %v", err)
	}
	f.failNew = nil
	if err := s.SetCircleChat(ctx, "Family", true); err != nil {
		t.Fatal(err)
	}
	if err := plain.SetCircleChat(ctx, "Family", false); !errors.Is(err, ErrNoGroupChat) {
		t.Fatalf("SetCircleChat off without a backend = %v", err)
	}
	if c, _ := st.Circle(ctx, "Family"); c.Room == "" {
		t.Fatal("the record was cleared without destroying the room")
	}
}
