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
