package lean

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

const testStream = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' ` +
	`xmlns:stream='http://etherx.jabber.org/streams' id='x1' from='d' version='1.0'>` +
	`<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>` +
	"\n \t" +
	`<message from='a@d/r' to="b@d" type='chat' title='1 > 0 / 2'><body>hi &amp; 1 &gt; 0</body><x a="'>'"/></message>` +
	` <presence/>` +
	`<iq type='result' id='i1'><query xmlns='q'><item name="a/b"/><item/></query></iq>` +
	`</stream:stream>`

var testItems = []struct {
	kind Kind
	name string
}{
	{ItemHeader, "stream:stream"},
	{ItemElement, "stream:features"},
	{ItemElement, "message"},
	{ItemElement, "presence"},
	{ItemElement, "iq"},
	{ItemClose, "</stream:stream>"},
}

// TestScannerSplitsStream checks that the scanner returns the header, every
// top-level element whole (quoted '>' and '/' inside attribute values, nested
// and empty elements) and the stream's end, also when the bytes arrive one
// at a time.
func TestScannerSplitsStream(t *testing.T) {
	for _, oneByte := range []bool{false, true} {
		var r = strings.NewReader(testStream)
		sc := NewScanner(r)
		if oneByte {
			sc = NewScanner(iotest.OneByteReader(r))
		}
		for i, want := range testItems {
			kind, item, err := sc.Next()
			if err != nil {
				t.Fatalf("oneByte=%v item %d: %v", oneByte, i, err)
			}
			name := string(TagName(item))
			if kind == ItemClose {
				name = string(item)
			}
			if kind != want.kind || name != want.name {
				t.Fatalf("oneByte=%v item %d: kind %d %q, want %d %q", oneByte, i, kind, item, want.kind, want.name)
			}
			if kind == ItemElement {
				if _, err := xmlel.Parse(string(item)); err != nil {
					t.Fatalf("item %d %q is not a whole element: %v", i, item, err)
				}
			}
		}
		if _, _, err := sc.Next(); err == nil {
			t.Fatalf("oneByte=%v: read past the end of the input", oneByte)
		}
	}
}

// TestScanIncompleteAndRestricted checks partial input and restricted XML.
func TestScanIncompleteAndRestricted(t *testing.T) {
	for _, in := range []string{"<message><body>x</body>", "<message a='>", "<presence/", "<"} {
		_, n, _, err := scanItem([]byte(in), true)
		if n != 0 || err != nil {
			t.Errorf("scanItem(%q) = %d, %v; want incomplete", in, n, err)
		}
	}
	for _, in := range []string{"<!-- c --><presence/>", "<message><!-- c --></message>", "<message><?pi?></message>"} {
		if _, _, _, err := scanItem([]byte(in), true); !errors.Is(err, ErrRestricted) {
			t.Errorf("scanItem(%q): err %v, want restricted XML", in, err)
		}
	}
	if _, _, _, err := scanItem([]byte("text<stream:stream>"), false); err == nil {
		t.Error("text before the stream header accepted")
	}
}

// TestScannerTooLarge checks the 1 MiB bound of a top-level element.
func TestScannerTooLarge(t *testing.T) {
	in := "<stream:stream><message><body>" + strings.Repeat("a", 2<<20) + "</body></message>"
	sc := NewScanner(strings.NewReader(in))
	if _, _, err := sc.Next(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sc.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v, want %v", err, ErrTooLarge)
	}
}

// TestAttr checks attribute lookup in a start tag.
func TestAttr(t *testing.T) {
	tag := []byte(`<message from = "room@muc/nick" type='groupchat' xml:lang='en' id="a'b"><body/></message>`)
	for name, want := range map[string]string{"from": "room@muc/nick", "type": "groupchat", "xml:lang": "en", "id": "a'b"} {
		v, ok := Attr(tag, name)
		if !ok || string(v) != want {
			t.Errorf("attr %s = %q, %v; want %q", name, v, ok, want)
		}
	}
	if _, ok := Attr(tag, "to"); ok {
		t.Error("attr to found in a tag without it")
	}
	if _, ok := Attr([]byte("<presence/>"), "type"); ok {
		t.Error("attr type found in <presence/>")
	}
}

// TestStanzas checks that the pre-built stanzas are well-formed and carry
// the protocol elements (XEP-0077, XEP-0045).
func TestStanzas(t *testing.T) {
	reg, err := xmlel.Parse(string(RegisterSet("u<1>", "p&'\"")))
	if err != nil {
		t.Fatal(err)
	}
	q := reg.Child("jabber:iq:register", "query")
	if reg.Get("type") != "set" || q == nil || q.ChildText("", "username") != "u<1>" || q.ChildText("", "password") != "p&'\"" {
		t.Fatalf("registration request %s", reg)
	}
	join, err := xmlel.Parse(string(JoinPresence("r@muc/n'1")))
	if err != nil {
		t.Fatal(err)
	}
	h := join.Child(nsMUC, "x").Child("", "history")
	if join.Get("to") != "r@muc/n'1" || h == nil || h.Get("maxstanzas") != "0" {
		t.Fatalf("join %s", join)
	}
	for _, open := range []bool{false, true} {
		cfg, err := xmlel.Parse(string(RoomConfig("r@muc", open)))
		if err != nil {
			t.Fatal(err)
		}
		x := cfg.Child(nsMUCOwner, "query").Child("jabber:x:data", "x")
		if cfg.Get("type") != "set" || x == nil || x.Get("type") != "submit" {
			t.Fatalf("room form %s", cfg)
		}
		fields := x.ChildrenNamed("", "field")
		if !open && len(fields) != 0 {
			t.Fatalf("instant room form has fields: %s", cfg)
		}
		if open && (len(fields) != 2 || fields[1].Get("var") != "muc#roomconfig_membersonly" || fields[1].ChildText("", "value") != "0") {
			t.Fatalf("open room form %s", cfg)
		}
	}
	hdr := string(StreamHeader("d'x")) + "</stream:stream>"
	if _, err := xmlel.Parse(hdr); err != nil {
		t.Fatalf("stream header %q: %v", hdr, err)
	}
}

// TestReaderCounts checks what the reading goroutine counts: chat messages
// with a body (not errors, not bodiless), groupchat messages and the
// occupant's own reflections.
func TestReaderCounts(t *testing.T) {
	in := `<stream:stream xmlns='jabber:client'>` +
		`<message type='chat' from='a@d/r'><body>1</body></message>` +
		`<message from='a@d/r'><body>2</body></message>` +
		`<message type='error' from='a@d/r'><body>x</body><error/></message>` +
		`<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>` +
		`<presence from='r@m/me'/>` +
		`<message type='groupchat' from='r@m/me'><body>3</body></message>` +
		`<message type='groupchat' from='r@m/other'><body>4</body></message>` +
		`<message type='groupchat' from='r@m'><subject>s</subject></message>` +
		`</stream:stream>`
	for _, tc := range []struct {
		kind   Count
		n, own int64
	}{{CountChat, 2, 0}, {CountGroupchat, 2, 1}, {CountNothing, 0, 0}} {
		x := &Conn{sc: NewScanner(strings.NewReader(in))}
		r := x.StartReader(tc.kind, "/me")
		select {
		case <-r.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("reader did not end at the end of the stream")
		}
		if r.Count() != tc.n || r.Own() != tc.own {
			t.Errorf("kind %d: counted %d (own %d), want %d (own %d)", tc.kind, r.Count(), r.Own(), tc.n, tc.own)
		}
		if tc.n > 0 && r.LastUnixNano() == 0 {
			t.Errorf("kind %d: no receipt time", tc.kind)
		}
	}
}

// TestSASLData checks the decoding of SASL challenge/success text: "=" and
// no text are empty data (RFC 6120 §6.4.6), bad base64 is an error.
func TestSASLData(t *testing.T) {
	for _, c := range []struct {
		in, want string
		bad      bool
	}{
		{in: "=", want: ""},
		{in: " =\n", want: ""},
		{in: "", want: ""},
		{in: "dj1hYmM=", want: "v=abc"},
		{in: "==", bad: true},
		{in: "not base64!", bad: true},
	} {
		got, err := saslData(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("saslData(%q) = %q, want an error", c.in, got)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("saslData(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
