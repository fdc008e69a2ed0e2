package mam

import (
	"context"
	"encoding/xml"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/history"
	"mellium.im/xmpp/jid"
)

var bg = context.Background()

// setup returns a test server with mam registered and the accounts alice,
// bob and carol.
func setup(t *testing.T, opts ...Option) (*modtest.Env, *Archive) {
	t.Helper()
	e := modtest.New(t)
	a := Register(e.S, opts...)
	for _, u := range []string{"alice", "bob", "carol"} {
		e.AddUser(u, "pw")
	}
	return e, a
}

// send sends a chat message with body from c.
func send(c *modtest.Client, to, id, body string) {
	c.T.Helper()
	c.Send(xmlel.MustParse(fmt.Sprintf(`<message xmlns='jabber:client' to='%s' type='chat' id='%s'><body>%s</body></message>`,
		to, id, body)))
}

// barrier returns once the server has processed everything c sent before.
func barrier(c *modtest.Client) {
	c.T.Helper()
	c.Request("get", "", `<ping xmlns='urn:xmpp:ping'/>`)
}

// nextMessage returns the next <message/> c receives.
func nextMessage(c *modtest.Client) *xmlel.Element {
	c.T.Helper()
	for {
		if el := c.Next(); el.Name.Local == "message" {
			return el
		}
	}
}

// stanzaIDs returns the ids of st's XEP-0359 stanza-ids with the given 'by'.
func stanzaIDs(st *xmlel.Element, by string) []string {
	var out []string
	for _, s := range st.ChildrenNamed(NSStanzaID, "stanza-id") {
		if s.Get("by") == by {
			out = append(out, s.Get("id"))
		}
	}
	return out
}

// result is one received archive result (XEP-0313 §4.2).
type result struct {
	ns, id, queryID string
	from, to        string // of the wrapping message
	stamp           string
	msg             *xmlel.Element // the forwarded message
}

var iqCounter atomic.Int64

// mamQuery sends an IQ set with payload to 'to' ("" for none) and returns
// the results received before the IQ answer, and that answer.
func mamQuery(c *modtest.Client, to, payload string) ([]result, *xmlel.Element) {
	c.T.Helper()
	id := "mam" + strconv.FormatInt(iqCounter.Add(1), 10)
	st := xmlel.New(server.NSClient, "iq", "type", "set", "id", id)
	st.Set("to", to)
	st.Add(xmlel.MustParse(payload))
	c.Send(st)
	var out []result
	for {
		el := c.Next()
		if el.Name.Local == "iq" && el.Get("id") == id {
			return out, el
		}
		if el.Name.Local != "message" {
			continue
		}
		r := el.Child("", "result")
		if r == nil {
			continue
		}
		fwd := r.Child(NSForward, "forwarded")
		if fwd == nil {
			c.T.Fatalf("result without forwarded: %s", el)
		}
		out = append(out, result{ns: r.Name.Space, id: r.Get("id"), queryID: r.Get("queryid"),
			from: el.Get("from"), to: el.Get("to"),
			stamp: fwd.Child(server.NSDelay, "delay").Get("stamp"), msg: fwd.Child(server.NSClient, "message")})
	}
}

// queryXML builds a query payload: fields (already rendered <field/>s) go
// into a submitted form, rsm into an RSM set, extra after them.
func queryXML(ns, queryID, fields, rsm, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<query xmlns='%s' queryid='%s'>`, ns, queryID)
	if fields != "" {
		fmt.Fprintf(&b, `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>%s</value></field>%s</x>`, ns, fields)
	}
	if rsm != "" {
		fmt.Fprintf(&b, `<set xmlns='http://jabber.org/protocol/rsm'>%s</set>`, rsm)
	}
	return b.String() + extra + `</query>`
}

func field(name string, values ...string) string {
	s := `<field var='` + name + `'>`
	for _, v := range values {
		s += `<value>` + v + `</value>`
	}
	return s + `</field>`
}

// finOf returns the fin of a query answer, failing unless it is a result.
func finOf(t *testing.T, iq *xmlel.Element, ns string) (complete bool, first, last string, index, count int) {
	t.Helper()
	f := iq.Child(ns, "fin")
	if iq.Get("type") != "result" || f == nil {
		t.Fatalf("query answer: %s", iq)
	}
	set := f.Child(NSRSM, "set")
	count, _ = strconv.Atoi(set.ChildText(NSRSM, "count"))
	if fe := set.Child(NSRSM, "first"); fe != nil {
		first = fe.Text()
		index, _ = strconv.Atoi(fe.Get("index"))
	}
	return f.Get("complete") == "true", first, set.ChildText(NSRSM, "last"), index, count
}

func resultIDs(rs []result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.id)
	}
	return out
}

func msgIDs(rs []result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.msg.Get("id"))
	}
	return out
}

func TestArchiveBothDirections(t *testing.T) {
	e, _ := setup(t)
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")

	send(alice, bob.JID.String(), "m1", "hi bob")
	got := nextMessage(bob)
	bobIDs := stanzaIDs(got, "bob@example.org")
	if len(bobIDs) != 1 || len(got.ChildrenNamed(NSStanzaID, "stanza-id")) != 1 {
		t.Fatalf("delivered message must carry exactly bob's stanza-id: %s", got)
	}
	barrier(alice)

	// alice's archive (no 'to'): the outgoing message under its own id.
	rs, iq := mamQuery(alice, "", queryXML(NS, "f27", "", "", ""))
	if len(rs) != 1 {
		t.Fatalf("alice's archive: %d results", len(rs))
	}
	r := rs[0]
	if r.id == "" || r.id == bobIDs[0] || r.queryID != "f27" || r.ns != NS || r.from != "" || r.to != alice.JID.String() {
		t.Errorf("alice's result %+v", r)
	}
	if r.stamp != "2025-03-01T12:00:00.000Z" {
		t.Errorf("delay stamp %q", r.stamp)
	}
	if r.msg == nil || r.msg.ChildText(server.NSClient, "body") != "hi bob" || r.msg.Get("from") != alice.JID.String() ||
		r.msg.Get("to") != bob.JID.String() || r.msg.Get("id") != "m1" || r.msg.Get("type") != "chat" {
		t.Errorf("forwarded message %v", r.msg)
	}
	if complete, first, last, index, count := finOf(t, iq, NS); !complete || first != r.id || last != r.id || index != 0 || count != 1 {
		t.Errorf("fin %s", iq)
	}

	// bob's archive (to his bare JID): the incoming one, under the id he saw.
	rs, _ = mamQuery(bob, "bob@example.org", queryXML(NS, "", "", "", ""))
	if len(rs) != 1 || rs[0].id != bobIDs[0] || rs[0].from != "bob@example.org" || rs[0].queryID != "" ||
		len(rs[0].msg.ChildrenNamed(NSStanzaID, "stanza-id")) != 0 {
		t.Fatalf("bob's archive: %+v", rs)
	}

	// bob answers alice's bare JID; alice is not available, so the message is
	// stored offline, with alice's stanza-id.
	send(bob, "alice@example.org", "m2", "hi alice")
	barrier(bob)
	off, err := e.Store.OfflineMessages(bg, "alice")
	if err != nil || len(off) != 1 {
		t.Fatalf("offline: %v, %v", off, err)
	}
	offline := xmlel.MustParse(string(off[0].Stanza))
	aliceIDs := stanzaIDs(offline, "alice@example.org")
	if len(aliceIDs) != 1 {
		t.Fatalf("offline copy without alice's stanza-id: %s", offline)
	}

	// A message to oneself is archived once.
	send(alice, "alice@example.org", "m3", "note to self")
	barrier(alice)
	rs, iq = mamQuery(alice, "", queryXML(NS, "q", "", "", ""))
	if !reflect.DeepEqual(msgIDs(rs), []string{"m1", "m2", "m3"}) || rs[1].id != aliceIDs[0] {
		t.Fatalf("alice's archive: %v", msgIDs(rs))
	}
	if complete, _, _, _, count := finOf(t, iq, NS); !complete || count != 3 {
		t.Errorf("fin %s", iq)
	}
	rs, _ = mamQuery(alice, "", queryXML(NS, "q", field("with", "alice@example.org"), "", ""))
	if !reflect.DeepEqual(msgIDs(rs), []string{"m3"}) {
		t.Errorf("with own JID: %v", msgIDs(rs))
	}
}

func TestForgedStanzaIDStripped(t *testing.T) {
	e, _ := setup(t)
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")
	forged := `<stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='forged1'/>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='BOB@Example.org' id='forged2'/>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='dave@elsewhere.example' id='keep'/>`
	for _, tc := range []struct {
		payload  string
		archived bool
	}{
		{`<body>hello</body>`, true},
		{`<body>secret</body><no-store xmlns='urn:xmpp:hints'/>`, false},
	} {
		alice.Send(xmlel.MustParse(`<message xmlns='jabber:client' type='chat' to='` + bob.JID.String() + `'>` + forged + tc.payload + `</message>`))
		got := nextMessage(bob)
		ids := stanzaIDs(got, "bob@example.org")
		if tc.archived && (len(ids) != 1 || strings.HasPrefix(ids[0], "forged")) {
			t.Errorf("archived: bob's stanza-ids %v in %s", ids, got)
		}
		if !tc.archived && len(ids) != 0 {
			t.Errorf("not archived: bob's stanza-ids %v in %s", ids, got)
		}
		for _, s := range got.ChildrenNamed(NSStanzaID, "stanza-id") {
			if strings.HasPrefix(s.Get("id"), "forged") {
				t.Errorf("forged stanza-id delivered: %s", got)
			}
		}
		if keep := stanzaIDs(got, "dave@elsewhere.example"); !reflect.DeepEqual(keep, []string{"keep"}) {
			t.Errorf("another entity's stanza-id was removed: %s", got)
		}
	}
	// The sender's archive does not keep what it forged either.
	alice.Send(xmlel.MustParse(`<message xmlns='jabber:client' type='chat' to='bob@example.org'>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.org' id='forged3'/><body>x</body></message>`))
	barrier(alice)
	rs, _ := mamQuery(alice, "", queryXML(NS, "", "", "", ""))
	if len(rs) != 2 || len(rs[1].msg.ChildrenNamed(NSStanzaID, "stanza-id")) != 0 {
		t.Errorf("alice's archive: %d results, last %v", len(rs), rs[len(rs)-1].msg)
	}
}

func TestWhatIsArchived(t *testing.T) {
	e, _ := setup(t)
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")
	cases := []struct {
		name, typ, payload string
		archived           bool
	}{
		{"chat body", "chat", `<body>a</body>`, true},
		{"no type body", "", `<body>a</body>`, true},
		{"normal body", "normal", `<body>a</body>`, true},
		{"chat state only", "chat", `<active xmlns='http://jabber.org/protocol/chatstates'/>`, false},
		{"receipt only", "chat", `<received xmlns='urn:xmpp:receipts' id='x'/>`, false},
		{"empty", "chat", ``, false},
		{"headline", "headline", `<body>a</body>`, false},
		{"groupchat", "groupchat", `<body>a</body>`, false},
		{"error", "error", `<body>a</body><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`, false},
		{"no-store", "chat", `<body>a</body><no-store xmlns='urn:xmpp:hints'/>`, false},
		{"no-permanent-store", "chat", `<body>a</body><no-permanent-store xmlns='urn:xmpp:hints'/>`, false},
		{"store hint no body", "chat", `<store xmlns='urn:xmpp:hints'/><x xmlns='urn:example'/>`, true},
		{"store hint headline", "headline", `<store xmlns='urn:xmpp:hints'/><body>a</body>`, true},
		{"store hint groupchat", "groupchat", `<store xmlns='urn:xmpp:hints'/><body>a</body>`, false},
		{"store and no-store", "chat", `<store xmlns='urn:xmpp:hints'/><no-store xmlns='urn:xmpp:hints'/><body>a</body>`, false},
		{"omemo legacy", "chat", `<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted>`, true},
		{"omemo 2", "chat", `<encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/></encrypted>`, true},
		{"reaction", "chat", `<reactions xmlns='urn:xmpp:reactions:0' id='m0'><reaction>👍</reaction></reactions>`, true},
		{"correction", "chat", `<body>fixed</body><replace xmlns='urn:xmpp:message-correct:0' id='m0'/>`, true},
		{"retraction", "chat", `<retract xmlns='urn:xmpp:message-retract:1' id='m0'/>`, true},
		{"displayed marker", "chat", `<displayed xmlns='urn:xmpp:chat-markers:0' id='m0'/>`, true},
		{"carbon copy", "chat", `<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'/></sent><body>a</body>`, false},
	}
	want := 0
	for i, tc := range cases {
		st := xmlel.MustParse(`<message xmlns='jabber:client' to='` + bob.JID.String() + `' id='c` + strconv.Itoa(i) + `'>` + tc.payload + `</message>`)
		st.Set("type", tc.typ)
		alice.Send(st)
		got := nextMessage(bob)
		if got.Get("id") != "c"+strconv.Itoa(i) {
			t.Fatalf("%s: bob got %s", tc.name, got)
		}
		if archived := len(stanzaIDs(got, "bob@example.org")) == 1; archived != tc.archived {
			t.Errorf("%s: archived = %v, want %v", tc.name, archived, tc.archived)
		}
		if tc.archived {
			want++
		}
	}
	barrier(alice)
	for _, u := range []string{"alice", "bob"} {
		p, err := e.Store.QueryArchive(bg, u, store.ArchiveQuery{})
		if err != nil || p.Count != want {
			t.Errorf("%s's archive has %d entries, want %d (%v)", u, p.Count, want, err)
		}
	}
}

// pageAll fetches the whole result set of fields page by page of size max,
// forward (after) or backward (before), checking each fin, and returns the
// results in archive order and the number of pages.
func pageAll(t *testing.T, c *modtest.Client, ns, fields string, max int, backward bool) ([]result, int) {
	t.Helper()
	var all []result
	cursor, count := "", -1
	for pages := 1; ; pages++ {
		rsm := fmt.Sprintf(`<max>%d</max><after>%s</after>`, max, cursor)
		if backward {
			rsm = fmt.Sprintf(`<max>%d</max><before>%s</before>`, max, cursor)
		}
		rs, iq := mamQuery(c, "", queryXML(ns, "p", fields, rsm, ""))
		complete, first, last, index, n := finOf(t, iq, ns)
		if count == -1 {
			count = n
		} else if n != count {
			t.Fatalf("page %d: count %d, was %d", pages, n, count)
		}
		if len(rs) == 0 {
			if !complete {
				t.Fatalf("page %d: empty but not complete", pages)
			}
			return all, pages
		}
		if first != rs[0].id || last != rs[len(rs)-1].id || len(rs) > max {
			t.Fatalf("page %d: fin first %s last %s, results %v", pages, first, last, resultIDs(rs))
		}
		if backward {
			all = append(slices.Clone(rs), all...)
			if index != count-len(all) {
				t.Fatalf("page %d: index %d, want %d", pages, index, count-len(all))
			}
			cursor = first
		} else {
			if index != len(all) {
				t.Fatalf("page %d: index %d, want %d", pages, index, len(all))
			}
			all = append(all, rs...)
			cursor = last
		}
		if complete {
			if len(all) != count {
				t.Fatalf("complete after %d of %d results", len(all), count)
			}
			return all, pages
		}
	}
}

func TestPaging1000(t *testing.T) {
	e, _ := setup(t)
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")
	const n = 1000
	var sent []string
	for i := range n {
		id := "m" + strconv.Itoa(i)
		send(alice, bob.JID.String(), id, "message "+strconv.Itoa(i))
		sent = append(sent, id)
	}
	var bobIDs []string
	for i := range n {
		m := nextMessage(bob)
		if m.Get("id") != sent[i] {
			t.Fatalf("message %d: got %s", i, m.Get("id"))
		}
		ids := stanzaIDs(m, "bob@example.org")
		if len(ids) != 1 {
			t.Fatalf("message %d without stanza-id", i)
		}
		bobIDs = append(bobIDs, ids[0])
	}
	barrier(alice)

	for _, backward := range []bool{false, true} {
		rs, pages := pageAll(t, bob, NS, "", 50, backward)
		if pages != n/50 {
			t.Errorf("backward=%v: %d pages, want %d", backward, pages, n/50)
		}
		if !reflect.DeepEqual(resultIDs(rs), bobIDs) || !reflect.DeepEqual(msgIDs(rs), sent) {
			t.Fatalf("backward=%v: bob's paged archive differs from what he received", backward)
		}
		rs, _ = pageAll(t, alice, NS, "", 50, backward)
		if !reflect.DeepEqual(msgIDs(rs), sent) {
			t.Fatalf("backward=%v: alice's paged archive differs from what she sent", backward)
		}
		if seen := map[string]bool{}; true {
			for _, id := range resultIDs(rs) {
				if seen[id] || slices.Contains(bobIDs, id) {
					t.Fatalf("alice's archive id %s repeated or shared with bob's archive", id)
				}
				seen[id] = true
			}
		}
	}

	// A larger <max/> is lowered to the cap; no <max/> means the cap.
	rs, iq := mamQuery(bob, "", queryXML(NS, "", "", "<max>1000</max>", ""))
	if complete, _, _, _, count := finOf(t, iq, NS); len(rs) != DefaultMaxPageSize || complete || count != n {
		t.Errorf("max 1000: %d results, %s", len(rs), iq)
	}
	rs, _ = mamQuery(bob, "", queryXML(NS, "", "", "", ""))
	if len(rs) != DefaultMaxPageSize {
		t.Errorf("no max: %d results", len(rs))
	}
	// <max>0</max> only counts; <index/> jumps.
	rs, iq = mamQuery(bob, "", queryXML(NS, "", "", "<max>0</max>", ""))
	if complete, first, _, _, count := finOf(t, iq, NS); len(rs) != 0 || complete || first != "" || count != n {
		t.Errorf("max 0: %d results, %s", len(rs), iq)
	}
	rs, iq = mamQuery(bob, "", queryXML(NS, "", "", "<max>10</max><index>995</index>", ""))
	if complete, _, _, index, _ := finOf(t, iq, NS); !reflect.DeepEqual(resultIDs(rs), bobIDs[995:]) || !complete || index != 995 {
		t.Errorf("index 995: %v, %s", resultIDs(rs), iq)
	}
}

func TestPagingCutBySendQueue(t *testing.T) {
	// A 16 KiB send queue allows 4 KiB of results per page: pages of 5 or
	// so 400-byte messages, whatever <max/> says.
	e := modtest.New(t, func(c *server.Config) { c.Limits.SendQueueBytes = 16 << 10 })
	Register(e.S)
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")
	alice := e.Connect("alice", "pw")
	var sent []string
	for i := range 40 {
		id := "m" + strconv.Itoa(i)
		send(alice, "bob@example.org", id, strings.Repeat("x", 400))
		sent = append(sent, id)
	}
	barrier(alice)
	for _, backward := range []bool{false, true} {
		rs, pages := pageAll(t, alice, NS, "", 50, backward)
		if !reflect.DeepEqual(msgIDs(rs), sent) || pages < 5 {
			t.Errorf("backward=%v: %d pages, ids %v", backward, pages, msgIDs(rs))
		}
	}
}

func TestFilters(t *testing.T) {
	e, _ := setup(t)
	alice1 := e.Connect("alice", "pw")
	alice2 := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")
	carol := e.Connect("carol", "pw")
	// Each message one minute after the previous; bob only archives.
	step := func(c *modtest.Client, to, id string) {
		send(c, to, id, id)
		barrier(c)
		e.Clock.Advance(time.Minute)
	}
	step(alice1, "bob@example.org", "a1")           // 12:00
	step(alice2, "bob@example.org", "a2")           // 12:01
	step(carol, "bob@example.org", "c1")            // 12:02
	step(bob, alice1.JID.String(), "b1")            // 12:03 to alice's first resource
	step(bob, "alice@example.org", "b2")            // 12:04 to alice's bare JID
	step(alice1, "bob@example.org/elsewhere", "a3") // 12:05
	all, _ := mamQuery(bob, "", queryXML(NS, "", "", "", ""))
	if !reflect.DeepEqual(msgIDs(all), []string{"a1", "a2", "c1", "b1", "b2", "a3"}) {
		t.Fatalf("bob's archive: %v", msgIDs(all))
	}
	ids := map[string]string{}
	for _, r := range all {
		ids[r.msg.Get("id")] = r.id
	}
	for _, tc := range []struct {
		name, fields string
		want         []string
	}{
		{"with bare", field("with", "alice@example.org"), []string{"a1", "a2", "b1", "b2", "a3"}},
		{"with full", field("with", alice1.JID.String()), []string{"a1", "b1", "a3"}},
		{"with other full", field("with", alice2.JID.String()), []string{"a2"}},
		{"with unknown resource", field("with", "alice@example.org/nope"), nil},
		{"with carol", field("with", "carol@example.org"), []string{"c1"}},
		{"empty with", field("with"), []string{"a1", "a2", "c1", "b1", "b2", "a3"}},
		{"start", field("start", "2025-03-01T12:02:00Z"), []string{"c1", "b1", "b2", "a3"}},
		{"end", field("end", "2025-03-01T12:02:00Z"), []string{"a1", "a2", "c1"}},
		{"start end offset", field("start", "2025-03-01T13:01:00+01:00") + field("end", "2025-03-01T12:03:00.000Z"), []string{"a2", "c1", "b1"}},
		{"start fraction", field("start", "2025-03-01T12:02:00.001Z"), []string{"b1", "b2", "a3"}},
		{"start with", field("with", "alice@example.org") + field("start", "2025-03-01T12:02:00Z"), []string{"b1", "b2", "a3"}},
		{"after-id", field("after-id", ids["c1"]), []string{"b1", "b2", "a3"}},
		{"before-id", field("before-id", ids["c1"]), []string{"a1", "a2"}},
		{"between", field("after-id", ids["a1"]) + field("before-id", ids["b2"]), []string{"a2", "c1", "b1"}},
		{"ids", field("ids", ids["b2"], ids["a1"]), []string{"a1", "b2"}},
		{"ids with", field("ids", ids["b2"], ids["c1"]) + field("with", "carol@example.org"), []string{"c1"}},
	} {
		rs, iq := mamQuery(bob, "", queryXML(NS, "", tc.fields, "", ""))
		complete, _, _, _, count := finOf(t, iq, NS)
		if !reflect.DeepEqual(msgIDs(rs), tc.want) || !complete || count != len(tc.want) {
			t.Errorf("%s: got %v (count %d), want %v", tc.name, msgIDs(rs), count, tc.want)
		}
	}
}

func TestFlipPage(t *testing.T) {
	e, _ := setup(t)
	alice := e.Connect("alice", "pw")
	for i := range 5 {
		send(alice, "bob@example.org", "m"+strconv.Itoa(i), "x")
	}
	barrier(alice)
	plain, iq1 := mamQuery(alice, "", queryXML(NS, "", "", "<max>3</max><before/>", ""))
	flipped, iq2 := mamQuery(alice, "", queryXML(NS, "", "", "<max>3</max><before/>", "<flip-page/>"))
	if !reflect.DeepEqual(msgIDs(plain), []string{"m2", "m3", "m4"}) ||
		!reflect.DeepEqual(msgIDs(flipped), []string{"m4", "m3", "m2"}) {
		t.Fatalf("plain %v, flipped %v", msgIDs(plain), msgIDs(flipped))
	}
	c1, f1, l1, i1, n1 := finOf(t, iq1, NS)
	c2, f2, l2, i2, n2 := finOf(t, iq2, NS)
	if c1 != c2 || f1 != f2 || l1 != l2 || i1 != i2 || n1 != n2 || f1 != plain[0].id || c1 || i1 != 2 {
		t.Errorf("flipping changed the page: %s vs %s", iq1, iq2)
	}
}

func TestQueryErrors(t *testing.T) {
	e, _ := setup(t)
	alice := e.Connect("alice", "pw")
	send(alice, "bob@example.org", "m1", "x")
	barrier(alice)
	for _, tc := range []struct {
		name, to, payload, want string
	}{
		{"another user's archive", "bob@example.org", queryXML(NS, "", "", "", ""), "forbidden"},
		{"another user's form (get)", "bob@example.org", `<query xmlns='urn:xmpp:mam:2'/>`, "forbidden"},
		{"no such account", "nobody@example.org", queryXML(NS, "", "", "", ""), "service-unavailable"},
		{"server archive", "example.org", queryXML(NS, "", "", "", ""), "service-unavailable"},
		{"unknown field", "", queryXML(NS, "", field("free-text-search", "x"), "", ""), "feature-not-implemented"},
		{"pubsub node", "", `<query xmlns='urn:xmpp:mam:2' node='n'/>`, "feature-not-implemented"},
		{"wrong FORM_TYPE", "", `<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>` +
			`<field var='FORM_TYPE'><value>urn:example</value></field></x></query>`, "bad-request"},
		{"form type", "", `<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='cancel'/></query>`, "bad-request"},
		{"field twice", "", queryXML(NS, "", field("start", "2025-01-01T00:00:00Z")+field("start", "2025-01-01T00:00:00Z"), "", ""), "bad-request"},
		{"two values", "", queryXML(NS, "", field("with", "a@example.org", "b@example.org"), "", ""), "bad-request"},
		{"date only", "", queryXML(NS, "", field("start", "2025-03-01"), "", ""), "bad-request"},
		{"no zone", "", queryXML(NS, "", field("end", "2025-03-01T12:00:00"), "", ""), "bad-request"},
		{"garbage date", "", queryXML(NS, "", field("start", "yesterday"), "", ""), "bad-request"},
		{"bad with", "", queryXML(NS, "", field("with", "@@"), "", ""), "bad-request"},
		{"unknown after-id", "", queryXML(NS, "", field("after-id", "nope"), "", ""), "item-not-found"},
		{"unknown before-id", "", queryXML(NS, "", field("before-id", "nope"), "", ""), "item-not-found"},
		{"unknown ids", "", queryXML(NS, "", field("ids", "nope"), "", ""), "item-not-found"},
		{"unknown after", "", queryXML(NS, "", "", "<after>nope</after>", ""), "item-not-found"},
		{"unknown before", "", queryXML(NS, "", "", "<before>nope</before>", ""), "item-not-found"},
		{"negative max", "", queryXML(NS, "", "", "<max>-1</max>", ""), "bad-request"},
		{"bad max", "", queryXML(NS, "", "", "<max>ten</max>", ""), "bad-request"},
		{"index with after", "", queryXML(NS, "", "", "<after>x</after><index>1</index>", ""), "bad-request"},
	} {
		id := "e" + strconv.FormatInt(iqCounter.Add(1), 10)
		st := xmlel.New(server.NSClient, "iq", "type", "set", "id", id)
		if strings.HasSuffix(tc.name, "(get)") {
			st.Set("type", "get")
		}
		st.Set("to", tc.to)
		st.Add(xmlel.MustParse(tc.payload))
		alice.Send(st)
		for {
			el := alice.Next()
			if el.Name.Local == "message" {
				t.Errorf("%s: result sent before the error: %s", tc.name, el)
				continue
			}
			if el.Get("id") == id {
				if got := modtest.ErrorCondition(el); got != tc.want {
					t.Errorf("%s: got %s, want %s", tc.name, el, tc.want)
				}
				break
			}
		}
	}
	// Others can neither read nor change alice's preferences.
	bob := e.Connect("bob", "pw")
	modtest.WantIQError(t, bob.Request("get", "alice@example.org", `<prefs xmlns='urn:xmpp:mam:2'/>`), "forbidden")
	modtest.WantIQError(t, bob.Request("set", "alice@example.org", `<prefs xmlns='urn:xmpp:mam:2' default='never'/>`), "forbidden")
	modtest.WantIQError(t, bob.Request("get", "alice@example.org", `<metadata xmlns='urn:xmpp:mam:2'/>`), "forbidden")
}

func TestPrefs(t *testing.T) {
	e, _ := setup(t)
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")
	carol := e.Connect("carol", "pw")

	r := alice.Request("get", "", `<prefs xmlns='urn:xmpp:mam:2'/>`)
	if p := r.Child(NS, "prefs"); p == nil || p.Get("default") != "always" || p.Child(NS, "always") == nil || p.Child(NS, "never") == nil {
		t.Fatalf("default prefs: %s", r)
	}
	for _, bad := range []string{
		`<prefs xmlns='urn:xmpp:mam:2'/>`,
		`<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>`,
		`<prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>@@</jid></always></prefs>`,
	} {
		if modtest.ErrorCondition(alice.Request("set", "", bad)) == "" {
			t.Errorf("accepted %s", bad)
		}
	}

	// exchange sends one message each way between alice and c and reports
	// which ended up in alice's archive.
	n := 0
	exchange := func(c *modtest.Client) []string {
		t.Helper()
		n++
		in, out := fmt.Sprintf("in%d", n), fmt.Sprintf("out%d", n)
		send(c, "alice@example.org", in, "x")
		barrier(c)
		send(alice, c.JID.String(), out, "x")
		barrier(alice)
		nextMessage(c)
		rs, _ := mamQuery(alice, "", queryXML(NS, "", "", "<before/>", ""))
		var got []string
		for _, id := range msgIDs(rs) {
			if id == in || id == out {
				got = append(got, id)
			}
		}
		return got
	}
	both := func() []string { return []string{fmt.Sprintf("in%d", n), fmt.Sprintf("out%d", n)} }
	set := func(payload string) *xmlel.Element {
		t.Helper()
		r := alice.Request("set", "alice@example.org", payload)
		if r.Get("type") != "result" {
			t.Fatalf("setting %s: %s", payload, r)
		}
		return r.Child(NS, "prefs")
	}

	if got := exchange(bob); !reflect.DeepEqual(got, both()) {
		t.Errorf("default always: %v", got)
	}
	p := set(`<prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>Bob@Example.org</jid></always><never/></prefs>`)
	if p.Get("default") != "never" || p.Child(NS, "always").ChildText(NS, "jid") != "bob@example.org" {
		t.Errorf("applied prefs %s", p)
	}
	if got := exchange(bob); !reflect.DeepEqual(got, both()) {
		t.Errorf("never, bob always: %v", got)
	}
	if got := exchange(carol); got != nil {
		t.Errorf("never: carol archived: %v", got)
	}

	// roster: bob is in alice's roster, carol is not.
	e.Subscribe("alice", "bob@example.org", "none")
	set(`<prefs xmlns='urn:xmpp:mam:2' default='roster'/>`)
	if got := exchange(bob); !reflect.DeepEqual(got, both()) {
		t.Errorf("roster: bob not archived: %v", got)
	}
	if got := exchange(carol); got != nil {
		t.Errorf("roster: carol archived: %v", got)
	}
	// never wins over always and over the roster; a full JID matches only
	// that resource.
	set(`<prefs xmlns='urn:xmpp:mam:2' default='always'><always><jid>bob@example.org</jid></always>` +
		`<never><jid>bob@example.org</jid><jid>` + carol.JID.String() + `</jid></never></prefs>`)
	if got := exchange(bob); got != nil {
		t.Errorf("never bob: archived %v", got)
	}
	if got := exchange(carol); got != nil {
		t.Errorf("never carol's resource: archived %v", got)
	}
	set(`<prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>carol@example.org/other</jid></never></prefs>`)
	if got := exchange(carol); !reflect.DeepEqual(got, both()) {
		t.Errorf("never another resource of carol: %v", got)
	}
	// Messages to oneself are archived under 'roster'.
	set(`<prefs xmlns='urn:xmpp:mam:1' default='roster'/>`)
	send(alice, "alice@example.org", "self", "x")
	barrier(alice)
	if rs, _ := mamQuery(alice, "", queryXML(NS, "", "", "<max>1</max><before/>", "")); len(rs) != 1 || rs[0].msg.Get("id") != "self" {
		t.Errorf("self message under roster: %v", msgIDs(rs))
	}
	// v1 reads the same preferences in its namespace.
	r = alice.Request("get", "", `<prefs xmlns='urn:xmpp:mam:1'/>`)
	if p := r.Child(NSv1, "prefs"); p == nil || p.Get("default") != "roster" {
		t.Errorf("v1 prefs: %s", r)
	}
}

func TestV1(t *testing.T) {
	e, _ := setup(t)
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")
	send(alice, bob.JID.String(), "m1", "x")
	id := stanzaIDs(nextMessage(bob), "bob@example.org")
	rs, iq := mamQuery(bob, "", queryXML(NSv1, "v1", field("with", "alice@example.org"), "<max>10</max>", ""))
	if len(rs) != 1 || rs[0].ns != NSv1 || rs[0].queryID != "v1" || rs[0].id != id[0] {
		t.Fatalf("v1 results %+v", rs)
	}
	if complete, first, _, _, count := finOf(t, iq, NSv1); !complete || first != id[0] || count != 1 {
		t.Errorf("v1 fin %s", iq)
	}
	r := bob.Request("get", "", `<query xmlns='urn:xmpp:mam:1'/>`)
	if q := r.Child(NSv1, "query"); q == nil || q.Child(NSDataForm, "x") == nil {
		t.Errorf("v1 form: %s", r)
	}
}

func TestFormMetadataDisco(t *testing.T) {
	e, _ := setup(t)
	disco.Register(e.S)
	alice := e.Connect("alice", "pw")

	r := alice.Request("get", "", `<query xmlns='urn:xmpp:mam:2'/>`)
	x := r.Child(NS, "query").Child(NSDataForm, "x")
	var vars []string
	for _, f := range x.ChildrenNamed(NSDataForm, "field") {
		vars = append(vars, f.Get("var"))
		if f.Child("", "required") != nil {
			t.Errorf("required field %s (XEP-0313 §4.1 forbids it)", f.Get("var"))
		}
	}
	if x.Get("type") != "form" || !reflect.DeepEqual(vars, []string{"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"}) {
		t.Errorf("form %s", x)
	}

	r = alice.Request("get", "", `<metadata xmlns='urn:xmpp:mam:2'/>`)
	if m := r.Child(NS, "metadata"); m == nil || len(m.Elements()) != 0 {
		t.Errorf("empty archive metadata: %s", r)
	}
	send(alice, "bob@example.org", "m1", "x")
	barrier(alice)
	e.Clock.Advance(time.Hour)
	send(alice, "bob@example.org", "m2", "x")
	barrier(alice)
	rs, _ := mamQuery(alice, "", queryXML(NS, "", "", "", ""))
	r = alice.Request("get", "alice@example.org", `<metadata xmlns='urn:xmpp:mam:2'/>`)
	m := r.Child(NS, "metadata")
	if m == nil || m.Child(NS, "start").Get("id") != rs[0].id || m.Child(NS, "end").Get("id") != rs[1].id ||
		m.Child(NS, "start").Get("timestamp") != "2025-03-01T12:00:00.000Z" || m.Child(NS, "end").Get("timestamp") != "2025-03-01T13:00:00.000Z" {
		t.Errorf("metadata %s", r)
	}

	features := func(to string) []string {
		r := alice.Request("get", to, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
		var out []string
		for _, f := range r.Child("", "query").ChildrenNamed("", "feature") {
			out = append(out, f.Get("var"))
		}
		return out
	}
	acct := features("alice@example.org")
	for _, f := range []string{NS, NSExtended, NSv1, NSStanzaID} {
		if !slices.Contains(acct, f) {
			t.Errorf("account disco lacks %s: %v", f, acct)
		}
	}
	if !slices.Contains(features("example.org"), NSStanzaID) {
		t.Error("server disco lacks urn:xmpp:sid:0")
	}
}

// TestMelliumQuery checks that queries built by another implementation (the
// mellium history client) are understood, and that it can parse the fin.
func TestMelliumQuery(t *testing.T) {
	e, _ := setup(t)
	alice := e.Connect("alice", "pw")
	for i := range 5 {
		send(alice, "bob@example.org", "m"+strconv.Itoa(i), "x")
	}
	send(alice, "carol@example.org", "c", "x")
	barrier(alice)
	q := history.Query{ID: "mq", With: jid.MustParse("bob@example.org"), Start: modtest.Start, Limit: 2, Last: true, Reverse: true}
	b, err := xml.Marshal(&q)
	if err != nil {
		t.Fatal(err)
	}
	rs, iq := mamQuery(alice, "", string(b))
	if !reflect.DeepEqual(msgIDs(rs), []string{"m4", "m3"}) || rs[0].queryID != "mq" {
		t.Fatalf("results %v", msgIDs(rs))
	}
	var res history.Result
	if err := xml.Unmarshal([]byte(iq.Child(NS, "fin").String()), &res); err != nil {
		t.Fatal(err)
	}
	if res.Complete || res.Set.First.ID != rs[1].id || res.Set.Last != rs[0].id || res.Set.Count == nil || *res.Set.Count != 5 {
		t.Errorf("mellium reads fin %s as %+v", iq, res)
	}
	// An empty queryid is not echoed.
	q = history.Query{}
	b, _ = xml.Marshal(&q)
	if rs, _ := mamQuery(alice, "", string(b)); len(rs) != 6 || rs[0].queryID != "" {
		t.Errorf("empty query: %d results, queryid %q", len(rs), rs[0].queryID)
	}
}

func TestRetention(t *testing.T) {
	e, a := setup(t, Retention(24*time.Hour))
	tick := make(chan time.Time)
	a.tick = tick
	alice := e.Connect("alice", "pw")
	for i := range 3 {
		send(alice, "bob@example.org", "old"+strconv.Itoa(i), "x")
	}
	barrier(alice)
	e.Clock.Advance(20 * time.Hour)
	send(alice, "bob@example.org", "new", "x")
	barrier(alice)
	count := func(user string) int {
		p, err := e.Store.QueryArchive(bg, user, store.ArchiveQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return p.Count
	}

	ctx, cancel := context.WithCancel(bg)
	done := a.Start(ctx)
	// The first pass runs at once: nothing is older than 24 hours yet.
	e.Clock.Advance(3 * time.Hour) // the old messages are now 23 hours old
	tick <- time.Now()             // returns once the first pass is over
	if count("alice") != 4 || count("bob") != 4 {
		t.Fatalf("pruned too early: %d, %d", count("alice"), count("bob"))
	}
	e.Clock.Advance(2 * time.Hour) // 25 hours
	tick <- time.Now()
	modtest.Eventually(t, "pruning", func() bool { return count("alice") == 1 && count("bob") == 1 })
	rs, _ := mamQuery(alice, "", queryXML(NS, "", "", "", ""))
	if !reflect.DeepEqual(msgIDs(rs), []string{"new"}) {
		t.Errorf("kept %v", msgIDs(rs))
	}
	cancel()
	<-done

	if n, err := a.Prune(bg); n != 0 || err != nil {
		t.Errorf("Prune with nothing to do = %d, %v", n, err)
	}
	e.Clock.Advance(20 * time.Hour) // "new" is 25 hours old
	if n, err := a.Prune(bg); n != 2 || err != nil {
		t.Errorf("Prune = %d, %v; want 2", n, err)
	}

	// Retention 0 keeps everything and starts nothing.
	e2, a2 := setup(t, Retention(0))
	if _, err := e2.Store.AppendArchive(bg, "alice", store.ArchiveEntry{With: "bob@example.org", Stamp: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a2.Start(bg):
	default:
		t.Error("Start with retention 0 started a job")
	}
	if n, err := a2.Prune(bg); n != 0 || err != nil {
		t.Errorf("Prune with retention 0 = %d, %v", n, err)
	}
}

func TestOptions(t *testing.T) {
	e := modtest.New(t)
	a := Register(e.S, MaxPageSize(1000), PruneInterval(time.Minute), Retention(-time.Hour))
	if a.maxPage != HardMaxPageSize || a.interval != time.Minute || a.retention != 0 {
		t.Errorf("options: %+v", a)
	}
	a = Register(modtest.New(t).S, MaxPageSize(0), PruneInterval(0))
	if a.maxPage != DefaultMaxPageSize || a.interval != DefaultPruneInterval || a.retention != DefaultRetention {
		t.Errorf("defaults: %+v", a)
	}
}

func TestLimitBytes(t *testing.T) {
	e := modtest.New(t, func(c *server.Config) { c.Limits.SendQueueBytes = 4 * (3*(100+resultOverhead) + 10) })
	a := Register(e.S)
	mk := func(sizes ...int) store.ArchivePage {
		p := store.ArchivePage{Complete: true, Count: 20, FirstIndex: 10}
		for i, n := range sizes {
			p.Entries = append(p.Entries, store.ArchiveEntry{ID: strconv.Itoa(i), Stanza: make([]byte, n)})
		}
		return p
	}
	ids := func(p store.ArchivePage) string {
		var s []string
		for _, e := range p.Entries {
			s = append(s, e.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		sizes    []int
		backward bool
		want     string
		index    int
		complete bool
	}{
		{[]int{100, 100, 100}, false, "0,1,2", 10, true},
		{[]int{100, 100, 100, 100, 100}, false, "0,1,2", 10, false},
		{[]int{100, 100, 100, 100, 100}, true, "2,3,4", 12, false},
		{[]int{100000, 100}, false, "0", 10, false},
		{[]int{100, 100000}, true, "1", 11, false},
	} {
		p := mk(tc.sizes...)
		a.limitBytes(&p, tc.backward)
		if ids(p) != tc.want || p.FirstIndex != tc.index || p.Complete != tc.complete {
			t.Errorf("%v backward=%v: %s index %d complete %v", tc.sizes, tc.backward, ids(p), p.FirstIndex, p.Complete)
		}
	}
}
