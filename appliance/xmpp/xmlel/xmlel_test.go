package xmlel

import (
	"encoding/xml"
	"errors"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := `<message xmlns="jabber:client" to="a@b" xml:lang="en"><body>x &lt; y &amp; "z"</body>` +
		`<x xmlns="urn:ex" a="1&quot;2"><y/></x></message>`
	el, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if el.Lang() != "en" || el.ChildText("jabber:client", "body") != `x < y & "z"` {
		t.Fatalf("decoded %#v", el)
	}
	if got := el.String(); got != in {
		t.Fatalf("round trip:\n got %s\nwant %s", got, in)
	}
	// As a stanza on a jabber:client stream the default namespace is implied.
	if got := string(el.Bytes("jabber:client")); !strings.HasPrefix(got, `<message to="a@b"`) {
		t.Fatalf("stanza form: %s", got)
	}
}

func TestEscapingAndInvalidCharacters(t *testing.T) {
	el := New("jabber:client", "body", "a", "<\"'&\n>")
	el.AddText("\x00ok\x1b\uFFFE" + string([]byte{0xff}))
	got := string(el.Bytes("jabber:client"))
	want := `<body a="&lt;&quot;&apos;&amp;&#xA;&gt;">` + "\uFFFDok\uFFFD\uFFFD\uFFFD</body>"
	if got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	// The output parses back.
	if _, err := Parse(got); err != nil {
		t.Fatal(err)
	}
}

func TestForeignNamespaceAttribute(t *testing.T) {
	el, err := Parse(`<a xmlns="urn:a" xmlns:p="urn:p" p:attr="v"/>`)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(el.String())
	if err != nil {
		t.Fatal(err)
	}
	if back.Attr[0].Name.Space != "urn:p" || back.Attr[0].Value != "v" {
		t.Fatalf("attribute namespace lost: %s", el)
	}
}

func TestRestrictedXML(t *testing.T) {
	for _, s := range []string{`<a><!-- c --></a>`, `<a><?pi x?></a>`, `<a><!DOCTYPE x></a>`} {
		if _, err := Parse(s); !errors.Is(err, ErrRestrictedXML) {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := Parse(`<a><b></a>`); err == nil {
		t.Error("mismatched tags accepted")
	}
}

func TestEditing(t *testing.T) {
	el := New("jabber:client", "message", "to", "x")
	el.Set("to", "y").Set("id", "1").Set("to", "")
	if el.Has("to") || el.Get("id") != "1" {
		t.Fatalf("attrs: %v", el.Attr)
	}
	el.Add(New("urn:a", "keep"), New("urn:b", "drop"), Text("t"))
	c := el.Copy()
	el.RemoveChildren(func(e *Element) bool { return e.Name.Space == "urn:b" })
	if len(el.Elements()) != 1 || len(c.Elements()) != 2 || el.Text() != "t" {
		t.Fatalf("remove/copy: %s / %s", el, c)
	}
	if el.Child("", "keep") == nil || el.FirstElement().Name != (xml.Name{Space: "urn:a", Local: "keep"}) {
		t.Fatal("child lookup")
	}
}
