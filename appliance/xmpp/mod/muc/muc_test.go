package muc

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/carbons"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

// TestCreateJoinAndAffiliations: a room is created locked (201) and opened
// as an instant room with the family defaults; a non-member is refused
// (407) until an admin grants membership, which a member not in the room
// learns by message (101); entering shows the occupants with affiliation,
// role, real JID (non-anonymous: 100) and occupant-id; affiliation changes
// reach everyone in presence.
func TestCreateJoinAndAffiliations(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")

	self := join(alice, "family", "Alice", "")
	if !hasCodes(self, 110, 201, 100, 170) {
		t.Fatalf("creator's self-presence: %s", self)
	}
	if it := item(self); it.Get("affiliation") != affOwner || it.Get("role") != roleModerator || it.Get("jid") != alice.JID {
		t.Fatalf("creator's item: %s", self)
	}
	// Locked until configured: the room does not exist for others.
	wantPresenceError(t, bob, "family", "Bob", "", "item-not-found")
	wantIQError(t, bob.IQ("get", roomJID("family"), "<query xmlns='"+NSDiscoInfo+"'/>"), "item-not-found")
	configure(t, alice, "family", "")

	info := wantResult(t, bob.IQ("get", roomJID("family"), "<query xmlns='"+NSDiscoInfo+"'/>"))
	feats := map[string]bool{}
	for _, f := range info.Child(NSDiscoInfo, "query").ChildrenNamed(NSDiscoInfo, "feature") {
		feats[f.Get("var")] = true
	}
	for _, f := range []string{NS, "muc_membersonly", "muc_persistent", "muc_nonanonymous", "muc_hidden",
		"muc_unmoderated", "muc_unsecured", NSMAM, NSOccupantID, NSStableID} {
		if !feats[f] {
			t.Errorf("room disco#info lacks %s: %s", f, info)
		}
	}

	wantPresenceError(t, bob, "family", "Bob", "", "registration-required")
	wantResult(t, setAffiliation(alice, "family", "bob@example.org", affMember, "welcome"))
	note := bob.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "message" && hasCodes(el, 101) })
	if note.Get("from") != roomJID("family") || item(note).Get("affiliation") != affMember {
		t.Fatalf("membership note: %s", note)
	}

	joinOK(t, bob, "family", "Bob", "")
	// Bob saw Alice, with her real JID in a non-anonymous room.
	ap := bob.Expect(presenceFrom(occ("family", "Alice"), ""))
	if item(ap).Get("jid") != alice.JID || item(ap).Get("affiliation") != affOwner || occupantID(ap) == "" {
		t.Fatalf("alice's presence to bob: %s", ap)
	}
	bp := alice.Expect(presenceFrom(occ("family", "Bob"), ""))
	if it := item(bp); it.Get("affiliation") != affMember || it.Get("role") != roleParticipant || it.Get("jid") != bob.JID {
		t.Fatalf("bob's presence to alice: %s", bp)
	}
	roomInfo := func(c *xmpptest.Client) map[string]string {
		res := wantResult(t, c.IQ("get", roomJID("family"), "<query xmlns='"+NSDiscoInfo+"'/>"))
		return formValues(res.Child(NSDiscoInfo, "query").Child(NSDataForm, "x"))
	}
	if v := roomInfo(alice); v["FORM_TYPE"] != NSRoomInfo || v["muc#roominfo_occupants"] != "2" {
		t.Fatalf("room info for a member: %v", v)
	}
	if v := roomInfo(e.online("carol", "c")); v["FORM_TYPE"] != NSRoomInfo || v["muc#roominfo_occupants"] != "" {
		t.Fatalf("room info for a stranger: %v", v)
	}
	bobID := occupantID(bp)
	if bobID == "" || bobID == occupantID(ap) {
		t.Fatalf("occupant-ids: alice %q bob %q", occupantID(ap), bobID)
	}

	// Promotion to admin: both see bob's new affiliation and role.
	wantResult(t, setAffiliation(alice, "family", "bob@example.org", affAdmin, ""))
	for _, c := range []*xmpptest.Client{alice, bob} {
		p := c.Expect(func(el *xmlel.Element) bool {
			return presenceFrom(occ("family", "Bob"), "")(el) && item(el).Get("affiliation") == affAdmin
		})
		if item(p).Get("role") != roleModerator || occupantID(p) != bobID {
			t.Fatalf("promotion presence: %s", p)
		}
	}
	// An admin may not touch the owner; the last owner may not step down.
	wantIQError(t, setAffiliation(bob, "family", "alice@example.org", affMember, ""), "not-allowed")
	wantIQError(t, setAffiliation(alice, "family", "alice@example.org", affAdmin, ""), "conflict")
	// Affiliation lists.
	res := wantResult(t, bob.IQ("get", roomJID("family"), "<query xmlns='"+NSAdmin+"'><item affiliation='owner'/></query>"))
	if items := res.Child(NSAdmin, "query").ChildrenNamed(NSAdmin, "item"); len(items) != 1 || items[0].Get("jid") != "alice@example.org" {
		t.Fatalf("owner list: %s", res)
	}
	// Revoking membership of a members-only room removes bob (321).
	wantResult(t, setAffiliation(alice, "family", "bob@example.org", affNone, ""))
	gone := bob.Expect(selfPresence(occ("family", "Bob"), "unavailable"))
	if !hasCodes(gone, 321) {
		t.Fatalf("removal presence: %s", gone)
	}
	alice.Expect(func(el *xmlel.Element) bool {
		return presenceFrom(occ("family", "Bob"), "unavailable")(el) && hasCodes(el, 321)
	})
	wantPresenceError(t, bob, "family", "Bob", "", "registration-required")
	// Bad requests.
	wantIQError(t, alice.IQ("set", roomJID("family"), "<query xmlns='"+NSAdmin+"'><item affiliation='king' jid='bob@example.org'/></query>"), "bad-request")
	wantIQError(t, alice.IQ("set", roomJID("family"), "<query xmlns='"+NSAdmin+"'><item/></query>"), "bad-request")
	wantIQError(t, bob.IQ("set", roomJID("family"), "<query xmlns='"+NSAdmin+"'><item affiliation='member' jid='carol@example.org'/></query>"), "forbidden")
}

// TestGroupchatArchiveAndPaging: a groupchat message reaches every
// occupant (the sender too) with the room's stanza-id and the sender's
// occupant-id; the room archive returns it under that id, in pages; only
// members read a members-only room's archive; the users' own archives keep
// no groupchat message, even one with a store hint (XEP-0313).
func TestGroupchatArchiveAndPaging(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	carol := e.online("carol", "c")
	create(t, alice, "home", "Alice", "")
	wantResult(t, setAffiliation(alice, "home", "bob@example.org", affMember, ""))
	joinOK(t, bob, "home", "Bob", "")
	bobPres := alice.Expect(presenceFrom(occ("home", "Bob"), ""))

	var ids []string
	for i := range 5 {
		body := fmt.Sprintf("hello %d", i)
		bob.Send("<message to='%s' type='groupchat' id='x%d'><body>%s</body><store xmlns='urn:xmpp:hints'/>"+
			"<stanza-id xmlns='urn:xmpp:sid:0' by='%s' id='forged'/><occupant-id xmlns='%s' id='forged'/></message>",
			roomJID("home"), i, body, roomJID("home"), NSOccupantID)
		got := alice.Expect(groupchat(occ("home", "Bob"), body))
		echo := bob.Expect(groupchat(occ("home", "Bob"), body))
		id := stanzaID(got, roomJID("home"))
		if id == "" || id == "forged" || stanzaID(echo, roomJID("home")) != id || got.Get("id") != fmt.Sprintf("x%d", i) {
			t.Fatalf("broadcast %d: %s / echo %s", i, got, echo)
		}
		if n := len(got.ChildrenNamed(NSOccupantID, "occupant-id")); n != 1 || occupantID(got) != occupantID(bobPres) {
			t.Fatalf("occupant-id of the message %s, of bob's presence %s", got, bobPres)
		}
		ids = append(ids, id)
	}

	q := func(rsm string) string {
		return fmt.Sprintf("<query xmlns='%s' queryid='q'><set xmlns='http://jabber.org/protocol/rsm'>%s</set></query>", NSMAM, rsm)
	}
	res, fin := mamQuery(alice, roomJID("home"), q("<max>2</max>"))
	wantResult(t, fin)
	if len(res) != 2 || res[0].id != ids[0] || res[1].id != ids[1] || res[0].from != roomJID("home") {
		t.Fatalf("first page: %+v %s", res, fin)
	}
	if m := res[0].msg; m == nil || m.Get("from") != occ("home", "Bob") || m.ChildText("", "body") != "hello 0" || res[0].stamp == "" {
		t.Fatalf("archived message: %+v", res[0])
	}
	last := fin.Child(NSMAM, "fin").Child("http://jabber.org/protocol/rsm", "set").ChildText("", "last")
	res, fin = mamQuery(alice, roomJID("home"), q("<max>10</max><after>"+last+"</after>"))
	if len(res) != 3 || res[2].id != ids[4] || fin.Child(NSMAM, "fin").Get("complete") != "true" {
		t.Fatalf("second page: %+v %s", res, fin)
	}
	// 'with' an occupant JID.
	res, _ = mamQuery(alice, roomJID("home"), fmt.Sprintf("<query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>"+
		"<field var='FORM_TYPE'><value>%s</value></field><field var='with'><value>%s</value></field></x></query>",
		NSMAM, NSMAM, occ("home", "Alice")))
	if len(res) != 0 {
		t.Fatalf("alice's messages: %+v", res)
	}
	_, fin = mamQuery(carol, roomJID("home"), q(""))
	wantIQError(t, fin, "forbidden")
	_, fin = mamQuery(alice, roomJID("home"), q("<after>nope</after>"))
	wantIQError(t, fin, "item-not-found")

	// The users' archives have none of it.
	res, _ = mamQuery(alice, "", fmt.Sprintf("<query xmlns='%s'/>", NSMAM))
	if len(res) != 0 {
		t.Fatalf("alice's own archive holds %d groupchat messages", len(res))
	}
	// Only occupants speak.
	carol.Send("<message to='%s' type='groupchat' id='c1'><body>hi</body></message>", roomJID("home"))
	if el := carol.Expect(errorFrom("message", roomJID("home"))); xmpptest.ErrorCondition(el) != "not-acceptable" {
		t.Fatalf("non-occupant groupchat: %s", el)
	}
	carol.Send("<message to='%s' type='groupchat'><body>hi</body></message>", roomJID("nowhere"))
	if el := carol.Expect(errorFrom("message", roomJID("nowhere"))); xmpptest.ErrorCondition(el) != "item-not-found" {
		t.Fatalf("message to an unknown room: %s", el)
	}
}

// TestHistoryAndSubject: entering replays the recent messages with delay
// stamps from the room, limited by <history/>, then the subject, which
// occupants may change unless the room forbids it.
func TestHistoryAndSubject(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	create(t, alice, "hall", "Alice", cfgField("membersonly", "0"))
	alice.Send("<message to='%s' type='groupchat'><subject>Dinner plans</subject></message>", roomJID("hall"))
	alice.Expect(subjectFrom(occ("hall", "Alice")))
	for i := range 4 {
		say(alice, "hall", fmt.Sprintf("line %d", i))
		alice.Expect(groupchat(occ("hall", "Alice"), fmt.Sprintf("line %d", i)))
	}
	// Chat states are not history.
	alice.Send("<message to='%s' type='groupchat'><active xmlns='%s'/></message>", roomJID("hall"), NSChatStates)
	barrier(alice)

	p := join(bob, "hall", "Bob", "<history maxstanzas='2'/>")
	if p.Get("type") == "error" {
		t.Fatal(p)
	}
	var got []string
	for len(got) < 3 {
		el := bob.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "message" })
		if el.Child("", "subject") != nil {
			if el.ChildText("", "subject") != "Dinner plans" || el.Get("from") != occ("hall", "Alice") {
				t.Fatalf("subject: %s", el)
			}
			got = append(got, "subject")
			break
		}
		d := el.Child(NSDelay, "delay")
		if d == nil || d.Get("from") != roomJID("hall") || d.Get("stamp") == "" || stanzaID(el, roomJID("hall")) == "" {
			t.Fatalf("history message without a proper delay or stanza-id: %s", el)
		}
		got = append(got, el.ChildText("", "body"))
	}
	if strings.Join(got, ",") != "line 2,line 3,subject" {
		t.Fatalf("history then subject: %q", got)
	}
	// maxchars='0': no history at all, but the subject.
	bob.Send("<presence to='%s' type='unavailable'/>", occ("hall", "Bob"))
	bob.Expect(selfPresence(occ("hall", "Bob"), "unavailable"))
	join(bob, "hall", "Bob", "<history maxchars='0'/>")
	el := bob.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "message" })
	if el.Child("", "subject") == nil {
		t.Fatalf("with maxchars=0, got %s before the subject", el)
	}

	// Participants may change the subject by default; not once forbidden.
	bob.Send("<message to='%s' type='groupchat'><subject>Lunch</subject></message>", roomJID("hall"))
	alice.Expect(func(el *xmlel.Element) bool {
		return subjectFrom(occ("hall", "Bob"))(el) && el.ChildText("", "subject") == "Lunch"
	})
	configure(t, alice, "hall", cfgField("changesubject", "0"))
	bob.Send("<message to='%s' type='groupchat'><subject>No</subject></message>", roomJID("hall"))
	if el := bob.Expect(errorFrom("message", roomJID("hall"))); xmpptest.ErrorCondition(el) != "forbidden" {
		t.Fatalf("subject change without permission: %s", el)
	}
}

// TestNicknames: nickname changes (303), conflicts (409), nicknames the
// Nickname profile refuses and presence without a nickname (jid-malformed),
// and two sessions of one account under one nickname.
func TestNicknames(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	bob2 := e.online("bob", "b2")
	create(t, alice, "pub", "Alice", cfgField("membersonly", "0"))
	joinOK(t, bob, "pub", "Bob", "")

	wantPresenceError(t, bob2, "pub", "alice", "", "conflict") // case-insensitive (RFC 8266)
	wantPresenceError(t, bob2, "pub", " ", "", "jid-malformed")
	bob2.Send("<presence to='%s'/>", roomJID("pub"))
	if el := bob2.Expect(errorFrom("presence", roomJID("pub"))); xmpptest.ErrorCondition(el) != "jid-malformed" {
		t.Fatalf("presence without a nickname: %s", el)
	}
	// Another session of bob under the same nickname.
	joinOK(t, bob2, "pub", "Bob", "")
	say(bob2, "pub", "from the second device")
	bob.Expect(groupchat(occ("pub", "Bob"), "from the second device"))
	alice.Expect(groupchat(occ("pub", "Bob"), "from the second device"))
	bob2.Send("<presence to='%s' type='unavailable'/>", occ("pub", "Bob"))
	bob2.Expect(selfPresence(occ("pub", "Bob"), "unavailable"))
	alice.ExpectNone(quiet, presenceFrom(occ("pub", "Bob"), "unavailable"))

	// Nickname change.
	bob.Send("<presence to='%s'/>", occ("pub", "Robert"))
	u := alice.Expect(presenceFrom(occ("pub", "Bob"), "unavailable"))
	if !hasCodes(u, 303) || item(u).Get("nick") != "Robert" {
		t.Fatalf("nick change seen by alice: %s", u)
	}
	if s := bob.Expect(selfPresence(occ("pub", "Bob"), "unavailable")); !hasCodes(s, 303) {
		t.Fatalf("nick change seen by bob: %s", s)
	}
	alice.Expect(presenceFrom(occ("pub", "Robert"), ""))
	bob.Expect(selfPresence(occ("pub", "Robert"), ""))
	bob.Send("<presence to='%s'/>", occ("pub", "Alice"))
	if el := bob.Expect(errorFrom("presence", occ("pub", "Alice"))); xmpptest.ErrorCondition(el) != "conflict" {
		t.Fatalf("nick change to a taken nickname: %s", el)
	}
	// Presence update: everyone sees the new status.
	bob.Send("<presence to='%s'><show>away</show></presence>", occ("pub", "Robert"))
	p := alice.Expect(func(el *xmlel.Element) bool {
		return presenceFrom(occ("pub", "Robert"), "")(el) && el.ChildText("", "show") == "away"
	})
	if item(p).Get("role") != roleParticipant {
		t.Fatalf("updated presence: %s", p)
	}
}

// TestPasswordAndConfigForm: the configuration form round trip, a
// password-protected room (401), maxusers (503) and bad form values.
func TestPasswordAndConfigForm(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	carol := e.online("carol", "c")
	create(t, alice, "secret", "Alice", "")

	form := wantResult(t, alice.IQ("get", roomJID("secret"), "<query xmlns='"+NSOwner+"'/>"))
	values := formValues(form.Child(NSOwner, "query").Child(NSDataForm, "x"))
	if values["FORM_TYPE"] != NSRoomConfig || values["muc#roomconfig_membersonly"] != "1" ||
		values["muc#roomconfig_whois"] != "anyone" || values["muc#roomconfig_persistentroom"] != "1" ||
		values["muc#roomconfig_enablearchiving"] != "1" {
		t.Fatalf("default configuration: %v", values)
	}
	configure(t, alice, "secret", cfgField("FORM_TYPE", NSRoomConfig)+cfgField("roomname", "Secret room")+
		cfgField("membersonly", "0")+cfgField("passwordprotectedroom", "1")+cfgField("roomsecret", "s3cr3t")+
		cfgField("maxusers", "2")+cfgField("whois", "moderators")+cfgField("publicroom", "1")+cfgField("allowpm", "participants"))
	values = formValues(wantResult(t, alice.IQ("get", roomJID("secret"), "<query xmlns='"+NSOwner+"'/>")).
		Child(NSOwner, "query").Child(NSDataForm, "x"))
	for k, want := range map[string]string{
		"muc#roomconfig_roomname": "Secret room", "muc#roomconfig_membersonly": "0",
		"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3cr3t",
		"muc#roomconfig_maxusers": "2", "muc#roomconfig_whois": "moderators", "muc#roomconfig_publicroom": "1",
		"muc#roomconfig_allowpm": "participants",
	} {
		if values[k] != want {
			t.Errorf("%s = %q, want %q", k, values[k], want)
		}
	}
	wantIQError(t, bob.IQ("get", roomJID("secret"), "<query xmlns='"+NSOwner+"'/>"), "forbidden")
	wantIQError(t, alice.IQ("set", roomJID("secret"), "<query xmlns='"+NSOwner+"'><x xmlns='jabber:x:data' type='submit'>"+
		cfgField("whois", "everybody")+"</x></query>"), "not-acceptable")
	wantIQError(t, alice.IQ("set", roomJID("secret"), "<query xmlns='"+NSOwner+"'><x xmlns='jabber:x:data' type='submit'>"+
		cfgField("persistentroom", "perhaps")+"</x></query>"), "not-acceptable")

	wantPresenceError(t, bob, "secret", "Bob", "", "not-authorized")
	wantPresenceError(t, bob, "secret", "Bob", "<password>wrong</password>", "not-authorized")
	p := joinOK(t, bob, "secret", "Bob", "<password>s3cr3t</password>")
	if hasCodes(p, 100) {
		t.Fatalf("semi-anonymous room announced as non-anonymous: %s", p)
	}
	// Semi-anonymous: bob does not see alice's JID; alice (moderator) sees bob's.
	if ap := bob.Expect(presenceFrom(occ("secret", "Alice"), "")); item(ap).Get("jid") != "" {
		t.Fatalf("real JID shown to a participant: %s", ap)
	}
	if bp := alice.Expect(presenceFrom(occ("secret", "Bob"), "")); item(bp).Get("jid") != bob.JID {
		t.Fatalf("real JID hidden from a moderator: %s", bp)
	}
	wantPresenceError(t, carol, "secret", "Carol", "<password>s3cr3t</password>", "service-unavailable")

	// Public rooms are listed, hidden ones are not.
	create(t, alice, "hidden", "Alice", "")
	items := wantResult(t, bob.IQ("get", svcDomain, "<query xmlns='"+NSDiscoItems+"'/>")).Child(NSDiscoItems, "query").Elements()
	if len(items) != 1 || items[0].Get("jid") != roomJID("secret") || items[0].Get("name") != "Secret room" {
		t.Fatalf("service items: %v", items)
	}
}

// TestModerationVoiceKickBan: in a moderated room newcomers are visitors
// who may not speak; a voice request reaches the moderators, whose approval
// gives voice; moderators kick (307) and admins ban (301), and banned users
// stay out (403).
func TestModerationVoiceKickBan(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	carol := e.online("carol", "c")
	create(t, alice, "stage", "Alice", cfgField("membersonly", "0")+cfgField("moderatedroom", "1"))
	if p := joinOK(t, bob, "stage", "Bob", ""); item(p).Get("role") != roleVisitor {
		t.Fatalf("newcomer in a moderated room: %s", p)
	}
	joinOK(t, carol, "stage", "Carol", "")
	say(bob, "stage", "may I?")
	if el := bob.Expect(errorFrom("message", roomJID("stage"))); xmpptest.ErrorCondition(el) != "forbidden" {
		t.Fatalf("visitor's message: %s", el)
	}
	// Voice request (XEP-0045 §7.13).
	bob.Send("<message to='%s'><x xmlns='jabber:x:data' type='submit'>%s<field var='muc#role'><value>participant</value></field></x></message>",
		roomJID("stage"), cfgField("FORM_TYPE", NSRequest))
	req := alice.Expect(func(el *xmlel.Element) bool {
		return el.Name.Local == "message" && el.Get("from") == roomJID("stage") && el.Child(NSDataForm, "x") != nil
	})
	v := formValues(req.Child(NSDataForm, "x"))
	if v["FORM_TYPE"] != NSRequest || v["muc#roomnick"] != "Bob" || v["muc#jid"] != bob.JID || v["muc#request_allow"] != "0" {
		t.Fatalf("voice request to the moderator: %s", req)
	}
	carol.ExpectNone(quiet, func(el *xmlel.Element) bool { return el.Child(NSDataForm, "x") != nil })
	alice.Send("<message to='%s'><x xmlns='jabber:x:data' type='submit'>%s%s%s</x></message>", roomJID("stage"),
		cfgField("FORM_TYPE", NSRequest), "<field var='muc#roomnick'><value>Bob</value></field>",
		"<field var='muc#request_allow'><value>true</value></field>")
	bob.Expect(func(el *xmlel.Element) bool {
		return selfPresence(occ("stage", "Bob"), "")(el) && item(el).Get("role") == roleParticipant
	})
	say(bob, "stage", "thanks")
	carol.Expect(groupchat(occ("stage", "Bob"), "thanks"))
	// Revoking voice.
	wantResult(t, setRole(alice, "stage", "Bob", roleVisitor, ""))
	bob.Expect(func(el *xmlel.Element) bool {
		return selfPresence(occ("stage", "Bob"), "")(el) && item(el).Get("role") == roleVisitor
	})

	// Kicks: only moderators, never an admin or owner.
	wantIQError(t, setRole(carol, "stage", "Bob", roleNone, ""), "forbidden")
	wantIQError(t, setRole(alice, "stage", "Nobody", roleNone, ""), "item-not-found")
	wantResult(t, setAffiliation(alice, "stage", "carol@example.org", affAdmin, ""))
	wantIQError(t, setRole(carol, "stage", "Alice", roleNone, ""), "not-allowed")
	wantResult(t, setRole(carol, "stage", "Bob", roleNone, "be nice"))
	k := bob.Expect(selfPresence(occ("stage", "Bob"), "unavailable"))
	if !hasCodes(k, 307) || item(k).Child(NSUser, "actor").Get("nick") != "Carol" || item(k).ChildText(NSUser, "reason") != "be nice" {
		t.Fatalf("kick: %s", k)
	}
	alice.Expect(func(el *xmlel.Element) bool {
		return presenceFrom(occ("stage", "Bob"), "unavailable")(el) && hasCodes(el, 307)
	})
	// A kicked user may come back; a banned one may not.
	joinOK(t, bob, "stage", "Bob", "")
	wantResult(t, setAffiliation(carol, "stage", "bob@example.org", affOutcast, "spam"))
	b := bob.Expect(selfPresence(occ("stage", "Bob"), "unavailable"))
	if !hasCodes(b, 301) || item(b).Get("affiliation") != affOutcast {
		t.Fatalf("ban: %s", b)
	}
	wantPresenceError(t, bob, "stage", "Bob", "", "forbidden")
	res := wantResult(t, carol.IQ("get", roomJID("stage"), "<query xmlns='"+NSAdmin+"'><item affiliation='outcast'/></query>"))
	if it := res.Child(NSAdmin, "query").Child(NSAdmin, "item"); it == nil || it.Get("jid") != "bob@example.org" || it.ChildText(NSAdmin, "reason") != "spam" {
		t.Fatalf("ban list: %s", res)
	}
}

// TestPrivateMessagesAndInvitations: private messages between occupants
// carry <x muc#user/> and the sender's occupant-id and follow allowpm;
// mediated invitations to a members-only room make the invitee a member;
// a decline reaches the inviter; direct invitations (XEP-0249) pass the
// server untouched.
func TestPrivateMessagesAndInvitations(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	carol := e.online("carol", "c")
	dave := e.online("dave", "d")
	create(t, alice, "kin", "Alice", "")

	// Invitation: carol becomes a member and may enter.
	alice.Send("<message to='%s'><x xmlns='%s'><invite to='carol@example.org'><reason>join us</reason></invite></x></message>",
		roomJID("kin"), NSUser)
	inv := carol.Expect(func(el *xmlel.Element) bool { return userX(el) != nil && userX(el).Child(NSUser, "invite") != nil })
	if inv.Get("from") != roomJID("kin") || userX(inv).Child(NSUser, "invite").Get("from") != "alice@example.org" ||
		userX(inv).Child(NSUser, "invite").ChildText(NSUser, "reason") != "join us" {
		t.Fatalf("invitation: %s", inv)
	}
	pres := joinOK(t, carol, "kin", "Carol", "")
	if item(pres).Get("affiliation") != affMember {
		t.Fatalf("invitee's affiliation: %s", pres)
	}
	// Decline.
	dave.Send("<message to='%s'><x xmlns='%s'><decline to='alice@example.org'><reason>busy</reason></decline></x></message>",
		roomJID("kin"), NSUser)
	d := alice.Expect(func(el *xmlel.Element) bool { return userX(el) != nil && userX(el).Child(NSUser, "decline") != nil })
	if userX(d).Child(NSUser, "decline").Get("from") != "dave@example.org" {
		t.Fatalf("decline: %s", d)
	}
	// Members may invite (allowinvites), non-occupants without affiliation may not.
	dave.Send("<message to='%s'><x xmlns='%s'><invite to='bob@example.org'/></x></message>", roomJID("kin"), NSUser)
	if el := dave.Expect(errorFrom("message", roomJID("kin"))); xmpptest.ErrorCondition(el) != "not-acceptable" {
		t.Fatalf("invitation by a stranger: %s", el)
	}

	// Private messages.
	carolPres := alice.Expect(presenceFrom(occ("kin", "Carol"), ""))
	carol.Send("<message to='%s' type='chat' id='pm1'><body>psst</body></message>", occ("kin", "Alice"))
	pm := alice.Expect(xmpptest.IsMessage("psst"))
	if pm.Get("from") != occ("kin", "Carol") || userX(pm) == nil || occupantID(pm) != occupantID(carolPres) || pm.Get("type") != "chat" {
		t.Fatalf("private message: %s", pm)
	}
	carol.Send("<message to='%s' type='chat'><body>?</body></message>", occ("kin", "Nobody"))
	if el := carol.Expect(errorFrom("message", occ("kin", "Nobody"))); xmpptest.ErrorCondition(el) != "item-not-found" {
		t.Fatalf("PM to nobody: %s", el)
	}
	carol.Send("<message to='%s' type='groupchat'><body>?</body></message>", occ("kin", "Alice"))
	if el := carol.Expect(errorFrom("message", occ("kin", "Alice"))); xmpptest.ErrorCondition(el) != "bad-request" {
		t.Fatalf("groupchat PM: %s", el)
	}
	dave.Send("<message to='%s' type='chat'><body>?</body></message>", occ("kin", "Alice"))
	if el := dave.Expect(errorFrom("message", occ("kin", "Alice"))); xmpptest.ErrorCondition(el) != "not-acceptable" {
		t.Fatalf("PM from a non-occupant: %s", el)
	}
	configure(t, alice, "kin", cfgField("allowpm", "none"))
	carol.Send("<message to='%s' type='chat'><body>again</body></message>", occ("kin", "Alice"))
	if el := carol.Expect(errorFrom("message", occ("kin", "Alice"))); xmpptest.ErrorCondition(el) != "forbidden" {
		t.Fatalf("PM with allowpm=none: %s", el)
	}
	if m := carol.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "message" && hasCodes(el, 104) }); m.Get("from") != roomJID("kin") {
		t.Fatalf("configuration change notice: %s", m)
	}

	// XEP-0249 direct invitation: a plain message between users.
	bob.Send("<message to='dave@example.org' id='di'><x xmlns='jabber:x:conference' jid='%s' password='pw' reason='come'/></message>", roomJID("kin"))
	di := dave.Expect(func(el *xmlel.Element) bool { return el.Get("id") == "di" })
	x := di.Child("jabber:x:conference", "x")
	if x == nil || x.Get("jid") != roomJID("kin") || x.Get("password") != "pw" || x.Get("reason") != "come" || di.Get("from") != bob.JID {
		t.Fatalf("direct invitation: %s", di)
	}
}

// TestSelfPingLeaveAndDestroy: XEP-0410 self-ping, a session that ends
// without leaving leaves the room, IQ relaying between occupants, and room
// destruction with an alternate venue.
func TestSelfPingLeaveAndDestroy(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	create(t, alice, "room", "Alice", cfgField("membersonly", "0"))
	joinOK(t, bob, "room", "Bob", "")
	ping := "<ping xmlns='urn:xmpp:ping'/>"
	wantResult(t, bob.IQ("get", occ("room", "Bob"), ping))
	wantIQError(t, e.online("carol", "c").IQ("get", occ("room", "Bob"), ping), "not-acceptable")

	// An IQ to another occupant is relayed to its session and back.
	done := make(chan *xmlel.Element, 1)
	go func() { done <- alice.IQ("get", occ("room", "Bob"), "<query xmlns='jabber:iq:version'/>") }()
	req := bob.Expect(func(el *xmlel.Element) bool { return el.Name.Local == "iq" && el.Get("from") == occ("room", "Alice") })
	bob.Send("<iq type='result' id='%s' to='%s'><query xmlns='jabber:iq:version'><name>test</name></query></iq>", req.Get("id"), occ("room", "Alice"))
	select {
	case res := <-done:
		if res.Get("type") != "result" || res.Get("from") != occ("room", "Bob") || res.Child("jabber:iq:version", "query") == nil {
			t.Fatalf("relayed answer: %s", res)
		}
	case <-time.After(xmpptest.DefaultTimeout):
		t.Fatal("no relayed answer")
	}

	// Bob's stream ends without leaving: the server's unavailable presence
	// takes him out of the room.
	bob.Close()
	alice.Expect(presenceFrom(occ("room", "Bob"), "unavailable"))
	bob = e.online("bob", "b")
	wantIQError(t, bob.IQ("get", occ("room", "Bob"), ping), "not-acceptable")
	joinOK(t, bob, "room", "Bob", "")

	// Only owners destroy.
	destroy := fmt.Sprintf("<query xmlns='%s'><destroy jid='%s'><reason>moving</reason></destroy></query>", NSOwner, roomJID("new"))
	wantIQError(t, bob.IQ("set", roomJID("room"), destroy), "forbidden")
	wantResult(t, alice.IQ("set", roomJID("room"), destroy))
	for _, c := range []*xmpptest.Client{alice, bob} {
		p := c.Expect(func(el *xmlel.Element) bool {
			return el.Name.Local == "presence" && el.Get("type") == "unavailable" && userX(el) != nil && userX(el).Child(NSUser, "destroy") != nil
		})
		d := userX(p).Child(NSUser, "destroy")
		if d.Get("jid") != roomJID("new") || d.ChildText(NSUser, "reason") != "moving" {
			t.Fatalf("destruction presence: %s", p)
		}
	}
	wantIQError(t, alice.IQ("get", roomJID("room"), "<query xmlns='"+NSDiscoInfo+"'/>"), "item-not-found")
	if rooms, _ := e.Store.MUCRooms(context.Background()); len(rooms) != 0 {
		t.Fatalf("stored rooms after destruction: %v", rooms)
	}
}

// TestTemporaryRoom: a non-persistent room vanishes with its last occupant.
func TestTemporaryRoom(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	create(t, alice, "tmp", "Alice", cfgField("persistentroom", "0"))
	info := wantResult(t, alice.IQ("get", roomJID("tmp"), "<query xmlns='"+NSDiscoInfo+"'/>"))
	if !strings.Contains(info.String(), "muc_temporary") {
		t.Fatalf("temporary room info: %s", info)
	}
	alice.Send("<presence to='%s' type='unavailable'/>", occ("tmp", "Alice"))
	alice.Expect(selfPresence(occ("tmp", "Alice"), "unavailable"))
	wantIQError(t, alice.IQ("get", roomJID("tmp"), "<query xmlns='"+NSDiscoInfo+"'/>"), "item-not-found")
	// A locked room that its creator leaves vanishes too.
	join(alice, "locked", "Alice", "")
	alice.Send("<presence to='%s' type='unavailable'/>", occ("locked", "Alice"))
	alice.Expect(selfPresence(occ("locked", "Alice"), "unavailable"))
	if self := join(alice, "locked", "Alice", ""); !hasCodes(self, 201) {
		t.Fatalf("re-creating a vanished room: %s", self)
	}
}

// TestRoomAvatar: the owner sets the room's vCard; occupants get the
// room's presence with the photo's SHA-1 (XEP-0153), so do newcomers, and
// disco#info carries it; others may read but not change it.
func TestRoomAvatar(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	create(t, alice, "pics", "Alice", cfgField("membersonly", "0"))
	wantIQError(t, bob.IQ("get", roomJID("pics"), "<vCard xmlns='vcard-temp'/>"), "item-not-found")
	img := []byte("\x89PNG not really an image")
	sum := sha1.Sum(img)
	hash := hex.EncodeToString(sum[:])
	vc := fmt.Sprintf("<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>%s</BINVAL></PHOTO></vCard>", base64.StdEncoding.EncodeToString(img))
	wantIQError(t, bob.IQ("set", roomJID("pics"), vc), "forbidden")
	wantResult(t, alice.IQ("set", roomJID("pics"), vc))
	isAvatar := func(el *xmlel.Element) bool {
		return presenceFrom(roomJID("pics"), "")(el) && el.Child(NSVCardUpdate, "x") != nil
	}
	if p := alice.Expect(isAvatar); p.Child(NSVCardUpdate, "x").ChildText(NSVCardUpdate, "photo") != hash {
		t.Fatalf("avatar presence: %s", p)
	}
	joinOK(t, bob, "pics", "Bob", "")
	if p := bob.Expect(isAvatar); p.Child(NSVCardUpdate, "x").ChildText(NSVCardUpdate, "photo") != hash {
		t.Fatalf("avatar presence on entering: %s", p)
	}
	got := wantResult(t, bob.IQ("get", roomJID("pics"), "<vCard xmlns='vcard-temp'/>"))
	if got.Child(NSVCard, "vCard").Child(NSVCard, "PHOTO") == nil {
		t.Fatalf("room vCard: %s", got)
	}
	if info := wantResult(t, bob.IQ("get", roomJID("pics"), "<query xmlns='"+NSDiscoInfo+"'/>")); !strings.Contains(info.String(), hash) {
		t.Fatalf("disco#info without the avatar hash: %s", info)
	}
	wantIQError(t, alice.IQ("set", roomJID("pics"), "<vCard xmlns='vcard-temp'><PHOTO><BINVAL>!!!</BINVAL></PHOTO></vCard>"), "bad-request")
}

// TestServiceDiscoAndBadInput: the service's disco#info, and errors for
// requests that make no sense.
func TestServiceDiscoAndBadInput(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	info := wantResult(t, alice.IQ("get", svcDomain, "<query xmlns='"+NSDiscoInfo+"'/>"))
	q := info.Child(NSDiscoInfo, "query")
	if id := q.Child(NSDiscoInfo, "identity"); id == nil || id.Get("category") != "conference" || id.Get("type") != "text" {
		t.Fatalf("service identity: %s", info)
	}
	for _, f := range []string{NS, NSMAM, NSOccupantID, NSPing} {
		if !strings.Contains(info.String(), "\""+f+"\"") {
			t.Errorf("service features lack %s", f)
		}
	}
	// The server lists the service.
	items := wantResult(t, alice.IQ("get", modtest.Domain, "<query xmlns='"+NSDiscoItems+"'/>"))
	if !strings.Contains(items.String(), svcDomain) {
		t.Fatalf("server items: %s", items)
	}
	wantIQError(t, alice.IQ("get", svcDomain, "<query xmlns='urn:example'/>"), "service-unavailable")
	wantIQError(t, alice.IQ("get", roomJID("none"), "<query xmlns='"+NSDiscoInfo+"'/>"), "item-not-found")
	wantIQError(t, alice.IQ("get", svcDomain, "<query xmlns='"+NSDiscoInfo+"' node='x'/>"), "item-not-found")
	create(t, alice, "r", "Alice", "")
	wantIQError(t, alice.IQ("get", roomJID("r"), "<query xmlns='urn:example'/>"), "service-unavailable")
	wantIQError(t, alice.IQ("set", roomJID("r"), "<query xmlns='"+NSOwner+"'/>"), "bad-request")
	wantIQError(t, alice.IQ("set", roomJID("r"), "<query xmlns='"+NSOwner+"'><x xmlns='jabber:x:data' type='result'/></query>"), "bad-request")
	alice.Send("<message to='%s' type='chat'><body>hi</body></message>", roomJID("r"))
	if el := alice.Expect(errorFrom("message", roomJID("r"))); xmpptest.ErrorCondition(el) != "bad-request" {
		t.Fatalf("chat to the room: %s", el)
	}
	alice.Send("<message to='%s'><x xmlns='%s'><invite to='@@'/></x></message>", roomJID("r"), NSUser)
	if el := alice.Expect(errorFrom("message", roomJID("r"))); xmpptest.ErrorCondition(el) != "jid-malformed" {
		t.Fatalf("invitation to a bad JID: %s", el)
	}
	// Garbage presence errors and types are ignored; the room still works.
	alice.Send("<presence to='%s' type='subscribe'/>", occ("r", "Alice"))
	alice.Send("<presence to='%s' type='error'><error type='cancel'><bad-request xmlns='%s'/></error></presence>", occ("r", "Alice"), server.NSStanzas)
	wantResult(t, alice.IQ("get", occ("r", "Alice"), "<ping xmlns='urn:xmpp:ping'/>"))
}

// TestPersistenceAcrossRestart: configuration, affiliations, subject,
// vCard and archive survive a restart (new store handle, new server); the
// history comes back from the archive.
func TestPersistenceAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.db")
	e1 := newStoredEnv(t, path, true)
	alice := e1.online("alice", "a")
	create(t, alice, "home", "Alice", cfgField("roomname", "Our home"))
	wantResult(t, setAffiliation(alice, "home", "bob@example.org", affMember, ""))
	alice.Send("<message to='%s' type='groupchat'><subject>Welcome</subject></message>", roomJID("home"))
	alice.Expect(subjectFrom(occ("home", "Alice")))
	say(alice, "home", "first")
	m := alice.Expect(groupchat(occ("home", "Alice"), "first"))
	wantResult(t, alice.IQ("set", roomJID("home"), "<vCard xmlns='vcard-temp'><FN>Home</FN></vCard>"))
	alice.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e1.S.Shutdown(ctx)
	e1.Store.Close()

	e2 := newStoredEnv(t, path, false)
	alice = e2.online("alice", "a")
	joinOK(t, alice, "home", "Alice", "<history maxstanzas='0'/>")
	say(alice, "home", "second")
	alice.Expect(groupchat(occ("home", "Alice"), "second"))
	bob := e2.online("bob", "b")
	p := join(bob, "home", "Bob", "")
	if p.Get("type") == "error" || item(p).Get("affiliation") != affMember || hasCodes(p, 201) {
		t.Fatalf("member entering after a restart: %s", p)
	}
	isHistory := func(el *xmlel.Element) bool { return el.Get("type") == "groupchat" && el.Child("", "body") != nil }
	h := bob.Expect(isHistory)
	if h.ChildText("", "body") != "first" || stanzaID(h, roomJID("home")) != stanzaID(m, roomJID("home")) || h.Child(NSDelay, "delay") == nil {
		t.Fatalf("history after a restart: %s (was %s)", h, m)
	}
	if h := bob.Expect(isHistory); h.ChildText("", "body") != "second" {
		t.Fatalf("second history message: %s", h)
	}
	if s := bob.Expect(subjectFrom(occ("home", "Alice"))); s.ChildText("", "subject") != "Welcome" {
		t.Fatalf("subject after a restart: %s", s)
	}
	res, _ := mamQuery(bob, roomJID("home"), "<query xmlns='"+NSMAM+"'/>")
	if len(res) != 2 || res[0].id != stanzaID(m, roomJID("home")) {
		t.Fatalf("archive after a restart: %+v", res)
	}
	if info := wantResult(t, bob.IQ("get", roomJID("home"), "<query xmlns='"+NSDiscoInfo+"'/>")); !strings.Contains(info.String(), "Our home") {
		t.Fatalf("configuration after a restart: %s", info)
	}
	if vc := wantResult(t, bob.IQ("get", roomJID("home"), "<vCard xmlns='vcard-temp'/>")); vc.Child(NSVCard, "vCard").ChildText(NSVCard, "FN") != "Home" {
		t.Fatalf("vCard after a restart: %s", vc)
	}
	wantPresenceError(t, e2.online("carol", "c"), "home", "Carol", "", "registration-required")
}

// newStoredEnv is newEnv on the database at path (created with the users
// when fresh).
func newStoredEnv(t *testing.T, path string, fresh bool) *env {
	t.Helper()
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{Env: modtest.New(t, func(c *server.Config) { c.Store = st })}
	e.Store = st
	e.register()
	if fresh {
		for _, u := range []string{"alice", "bob", "carol", "dave"} {
			e.AddUser(u, "pw-"+u)
		}
	}
	return e
}

// TestRetention: the retention job deletes old room messages.
func TestRetention(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Retention = time.Hour })
	alice := e.online("alice", "a")
	create(t, alice, "old", "Alice", "")
	say(alice, "old", "ancient")
	alice.Expect(groupchat(occ("old", "Alice"), "ancient"))
	e.Clock.Advance(2 * time.Hour)
	if n, err := e.svc.Prune(context.Background()); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v", n, err)
	}
	if res, _ := mamQuery(alice, roomJID("old"), "<query xmlns='"+NSMAM+"'/>"); len(res) != 0 {
		t.Fatalf("archive after pruning: %+v", res)
	}
}

// TestRejoinAndGhosts: an entry request from a session already in the room
// gets the entry again (self-presence, subject), and an error from an
// occupant's session that shows it is gone takes it out (333).
func TestRejoinAndGhosts(t *testing.T) {
	e := newEnv(t)
	alice := e.online("alice", "a")
	bob := e.online("bob", "b")
	create(t, alice, "r", "Alice", cfgField("membersonly", "0"))
	joinOK(t, bob, "r", "Bob", "")
	if p := joinOK(t, bob, "r", "Bob", ""); item(p).Get("role") != roleParticipant {
		t.Fatalf("rejoin: %s", p)
	}
	alice.ExpectNone(quiet, presenceFrom(occ("r", "Bob"), "unavailable"))
	bob.Send("<message to='%s' type='error'><error type='cancel'><service-unavailable xmlns='%s'/></error></message>",
		occ("r", "Alice"), server.NSStanzas)
	if p := alice.Expect(presenceFrom(occ("r", "Bob"), "unavailable")); !hasCodes(p, 333) {
		t.Fatalf("ghost removal: %s", p)
	}
	// Leaving with a status text.
	joinOK(t, bob, "r", "Bob", "")
	bob.Send("<presence to='%s' type='unavailable'><status>bye</status></presence>", occ("r", "Bob"))
	if p := alice.Expect(presenceFrom(occ("r", "Bob"), "unavailable")); p.ChildText("", "status") != "bye" || item(p).Get("role") != roleNone {
		t.Fatalf("leave: %s", p)
	}
}

// TestNoCarbonsOfRoomMessages: a user's other resource with carbons on
// gets no copy of groupchat messages nor of private messages from the room
// (XEP-0280 §6: the room sends them to every joined session itself).
func TestNoCarbonsOfRoomMessages(t *testing.T) {
	e := newEnvWith(t, func(s *server.Server) { carbons.Register(s) })
	alice := e.online("alice", "a")
	alice2 := e.online("alice", "a2")
	wantResult(t, alice2.IQ("set", "", "<enable xmlns='urn:xmpp:carbons:2'/>"))
	bob := e.online("bob", "b")
	create(t, alice, "c", "Alice", cfgField("membersonly", "0"))
	joinOK(t, bob, "c", "Bob", "")
	say(bob, "c", "to all")
	alice.Expect(groupchat(occ("c", "Bob"), "to all"))
	bob.Send("<message to='%s' type='chat'><body>just you</body></message>", occ("c", "Alice"))
	alice.Expect(xmpptest.IsMessage("just you"))
	// A plain chat message is copied: carbons work.
	bob.Send("<message to='%s' type='chat'><body>direct</body></message>", alice.JID)
	alice.Expect(xmpptest.IsMessage("direct"))
	alice2.Expect(func(el *xmlel.Element) bool { return el.Child("urn:xmpp:carbons:2", "received") != nil })
	alice2.ExpectNone(quiet, func(el *xmlel.Element) bool {
		return el.Name.Local == "message" && strings.Contains(el.String(), roomJID("c"))
	})
}
