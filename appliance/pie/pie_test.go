package pie

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

func TestExportUser(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, u := range []string{"juliet", "romeo"} {
		if err := account.Create(ctx, st, u, "secret "+u); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = st.PutRosterItem(ctx, "juliet", store.RosterItem{JID: "romeo@example.org", Name: "Romeo", Subscription: "both", Groups: []string{"Friends"}})
	must(err)
	must(st.SetVCard(ctx, "juliet", []byte(`<vCard xmlns="vcard-temp"><FN>Juliet Capulet</FN></vCard>`)))
	must(st.SetPrivateXML(ctx, "juliet", "exodus:prefs", []byte(`<exodus xmlns="exodus:prefs"><defaultnick>Jule</defaultnick></exodus>`)))
	must(st.AddSubscriptionRequest(ctx, "juliet", "nurse@example.org", []byte(`<presence xmlns="jabber:client" type="subscribe" from="nurse@example.org"/>`)))
	must(st.PushOffline(ctx, "juliet", []byte(`<message xmlns="jabber:client" from="romeo@example.org/orchard" to="juliet@example.org" type="chat"><body>Neither, fair saint &amp; more</body></message>`), time.Now(), 0))
	_, err = st.PublishPEPItem(ctx, "juliet", "http://jabber.org/protocol/nick",
		store.PEPItem{ID: "current", Publisher: "juliet@example.org", Payload: []byte(`<nick xmlns="http://jabber.org/protocol/nick">Jule</nick>`), Published: time.Now()},
		[]byte(`{"access_model":"presence","max_items":1,"persist_items":true}`), store.PEPLimits{MaxItems: 10, MaxNodes: 10})
	must(err)
	for i, body := range []string{"first", "second", "third"} {
		_, err := st.AppendArchive(ctx, "juliet", store.ArchiveEntry{With: "romeo@example.org", Outgoing: i%2 == 0,
			Stamp: time.Date(2025, 3, 1, 12, i, 0, 0, time.UTC), Stanza: []byte(`<message xmlns="jabber:client" type="chat"><body>` + body + `</body></message>`)})
		must(err)
	}
	// Someone else's data stays out.
	must(st.SetVCard(ctx, "romeo", []byte(`<vCard xmlns="vcard-temp"><FN>Romeo Montague</FN></vCard>`)))

	var buf bytes.Buffer
	must(ExportUser(ctx, st, "example.org", "juliet", &buf, Options{Archive: true}))
	out := buf.String()
	if !strings.HasPrefix(out, "<?xml version='1.0' encoding='UTF-8'?>") {
		t.Fatalf("no XML declaration: %s", out)
	}
	root, err := xmlel.Parse(out)
	if err != nil {
		t.Fatalf("not XML: %v\n%s", err, out)
	}
	if root.Name != (xml.Name{Space: NS, Local: "server-data"}) {
		t.Fatalf("root %v", root.Name)
	}
	host := root.Child(NS, "host")
	user := host.Child(NS, "user")
	if host.Get("jid") != "example.org" || user.Get("name") != "juliet" || user.Has("password") {
		t.Fatalf("host/user: %s", out)
	}
	item := user.Child("jabber:iq:roster", "query").Child("jabber:iq:roster", "item")
	if item.Get("jid") != "romeo@example.org" || item.Get("name") != "Romeo" || item.Get("subscription") != "both" || item.ChildText("jabber:iq:roster", "group") != "Friends" {
		t.Fatalf("roster item: %s", item)
	}
	if fn := user.Child("vcard-temp", "vCard").ChildText("vcard-temp", "FN"); fn != "Juliet Capulet" {
		t.Fatalf("vCard FN %q", fn)
	}
	if n := user.Child("jabber:iq:private", "query").Child("exodus:prefs", "exodus").ChildText("exodus:prefs", "defaultnick"); n != "Jule" {
		t.Fatalf("private XML: %q", n)
	}
	if p := user.Child("jabber:client", "presence"); p == nil || p.Get("type") != "subscribe" || p.Get("from") != "nurse@example.org" {
		t.Fatalf("subscription request: %v", p)
	}
	if m := user.Child(NS, "offline-messages").Child("jabber:client", "message"); m == nil || m.ChildText("jabber:client", "body") != "Neither, fair saint & more" {
		t.Fatalf("offline message: %v", m)
	}
	cfg := user.Child("http://jabber.org/protocol/pubsub#owner", "pubsub").Child("http://jabber.org/protocol/pubsub#owner", "configure")
	if cfg.Get("node") != "http://jabber.org/protocol/nick" || !strings.Contains(cfg.String(), `var="pubsub#access_model"><value>presence</value>`) {
		t.Fatalf("PEP configuration: %s", cfg)
	}
	its := user.Child("http://jabber.org/protocol/pubsub", "pubsub").Child("http://jabber.org/protocol/pubsub", "items")
	if its.Get("node") != "http://jabber.org/protocol/nick" || its.Child("http://jabber.org/protocol/pubsub", "item").ChildText("http://jabber.org/protocol/nick", "nick") != "Jule" {
		t.Fatalf("PEP items: %s", its)
	}
	results := user.Child(NSArchive, "archive").ChildrenNamed("urn:xmpp:mam:2", "result")
	if len(results) != 3 {
		t.Fatalf("%d archived messages", len(results))
	}
	fwd := results[2].Child("urn:xmpp:forward:0", "forwarded")
	if fwd.Child("urn:xmpp:delay", "delay").Get("stamp") != "2025-03-01T12:02:00Z" || fwd.Child("jabber:client", "message").ChildText("jabber:client", "body") != "third" || results[2].Get("id") == "" {
		t.Fatalf("archive entry: %s", results[2])
	}
	if strings.Contains(out, "Romeo Montague") {
		t.Fatal("romeo's vCard in juliet's export")
	}
	// Without the archive option, no archive.
	buf.Reset()
	must(ExportUser(ctx, st, "example.org", "juliet", &buf, Options{}))
	if strings.Contains(buf.String(), NSArchive) {
		t.Fatal("archive exported without the option")
	}
	if err := ExportUser(ctx, st, "example.org", "nobody", &buf, Options{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
}

func TestExportArchivePaging(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "hearth.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := account.Create(ctx, st, "a", "pw pw pw"); err != nil {
		t.Fatal(err)
	}
	n := archivePage + 7
	for i := range n {
		if _, err := st.AppendArchive(ctx, "a", store.ArchiveEntry{With: "b@x", Stamp: time.Unix(int64(i), 0), Stanza: []byte(`<message xmlns="jabber:client"><body>m</body></message>`)}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := ExportUser(ctx, st, "x", "a", &buf, Options{Archive: true}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(buf.String(), "<result "); got != n {
		t.Fatalf("%d results, want %d", got, n)
	}
}
