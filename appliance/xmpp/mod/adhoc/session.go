package adhoc

import (
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

// maxEnded bounds the ended sessions remembered (to answer session-expired
// rather than bad-sessionid for them, XEP-0050 §4.4).
const maxEnded = 4096

// session is one command execution (XEP-0050 §3.3): valid only for the
// full JID that started it and for its node.
type session struct {
	id, user, owner, node string
	// stage counts the stages run successfully.
	stage int
	// actions and def are the allowed actions of the current stage and
	// the one 'execute' stands for (XEP-0050 §4.2).
	actions []string
	def     string
	state   any
	expires time.Time
	// busy is set while a stage runs, so a second request for the same
	// session waits for no one and is refused.
	busy bool
}

// defaultAction resolves 'execute' inside a session (XEP-0050 §3.4, §4.2).
func (s *session) defaultAction() string {
	switch {
	case s.def != "":
		return s.def
	case len(s.actions) == 0:
		return ActionComplete
	default:
		return ActionNext
	}
}

// allowedActions are the actions the current stage accepts besides cancel.
func (s *session) allowedActions() []string {
	if len(s.actions) == 0 {
		return []string{ActionComplete}
	}
	return s.actions
}

type ended struct {
	owner string
	until time.Time
}

// table holds the live sessions, by id and by account, and remembers ended
// ones for a while.
type table struct {
	// timeout is how long a session waits for its next stage, and how
	// long an ended one is remembered.
	timeout time.Duration

	mu    sync.Mutex
	live  map[string]*session
	users map[string]map[string]*session
	ended map[string]ended
}

func (t *table) init(timeout time.Duration) {
	t.timeout = timeout
	t.live = map[string]*session{}
	t.users = map[string]map[string]*session{}
	t.ended = map[string]ended{}
}

// reserve starts a session for user's full JID owner on node, busy, or
// refuses with not-allowed when the account already has max live sessions
// (XEP-0050 §3.3). Timed-out sessions of the account are ended first.
func (t *table) reserve(user, owner, node string, now time.Time, max int) (*session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.users[user] {
		if !s.busy && !now.Before(s.expires) {
			t.endLocked(s, now)
		}
	}
	if len(t.users[user]) >= max {
		return nil, server.Errorf(server.ErrNotAllowed, "too many commands in progress; finish or cancel one first")
	}
	s := &session{id: newSessionID(), user: user, owner: owner, node: node, expires: now.Add(t.timeout), busy: true}
	for t.live[s.id] != nil {
		s.id = newSessionID()
	}
	t.live[s.id] = s
	if t.users[user] == nil {
		t.users[user] = map[string]*session{}
	}
	t.users[user][s.id] = s
	return s, nil
}

// acquire finds the live session sid of owner on node and marks it busy.
func (t *table) acquire(sid, owner, node string, now time.Time) (*session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.live[sid]
	if s == nil {
		if e, ok := t.ended[sid]; ok && e.owner == owner && now.Before(e.until) {
			return nil, ErrSessionExpired
		}
		return nil, ErrBadSessionID
	}
	if s.owner != owner || s.node != node {
		return nil, ErrBadSessionID
	}
	if s.busy {
		return nil, server.Errorf(server.ErrBadRequest, "the previous stage of this session is still running")
	}
	if !now.Before(s.expires) {
		t.endLocked(s, now)
		return nil, ErrSessionExpired
	}
	s.busy = true
	return s, nil
}

// release records the outcome of a stage: res nil (the stage failed) keeps
// the session at its stage; an executing response moves it on; any other
// status ends it. Either way the wait for the next stage starts anew.
func (t *table) release(s *session, res *Response, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live[s.id] != s {
		return // its connection ended meanwhile
	}
	s.busy = false
	s.expires = now.Add(t.timeout)
	if res == nil {
		return
	}
	if res.Status != StatusExecuting {
		t.endLocked(s, now)
		return
	}
	s.stage++
	s.actions, s.def, s.state = res.Actions, res.Default, res.State
}

// end ends s (cancel).
func (t *table) end(s *session, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live[s.id] == s {
		t.endLocked(s, now)
	}
}

// drop forgets s, which no requester has heard of.
func (t *table) drop(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocked(s)
}

// dropJID forgets the sessions of the full JID owner, whose stream has
// ended (XEP-0050 §3.3: a session belongs to one requester).
func (t *table) dropJID(owner string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.live {
		if s.owner == owner {
			t.removeLocked(s)
		}
	}
	for id, e := range t.ended {
		if e.owner == owner || !now.Before(e.until) {
			delete(t.ended, id)
		}
	}
}

func (t *table) removeLocked(s *session) {
	delete(t.live, s.id)
	if m := t.users[s.user]; m != nil {
		delete(m, s.id)
		if len(m) == 0 {
			delete(t.users, s.user)
		}
	}
}

// endLocked ends s and remembers it as ended for the timeout.
func (t *table) endLocked(s *session, now time.Time) {
	t.removeLocked(s)
	if len(t.ended) >= maxEnded {
		for id, e := range t.ended {
			if !now.Before(e.until) {
				delete(t.ended, id)
			}
		}
		for id := range t.ended {
			if len(t.ended) < maxEnded {
				break
			}
			delete(t.ended, id)
		}
	}
	t.ended[s.id] = ended{owner: s.owner, until: now.Add(t.timeout)}
}

// count returns the number of live sessions (tests).
func (t *table) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live)
}
