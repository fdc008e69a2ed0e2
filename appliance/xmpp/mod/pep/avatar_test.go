package pep

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"image"
	"image/png"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/peptest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// makePNG returns a w×h PNG and its base64.
func makePNG(t *testing.T, w, h int) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), base64.StdEncoding.EncodeToString(buf.Bytes())
}

func vcardPhotoOf(t *testing.T, svc *Service, user string) (typ, b64 string) {
	t.Helper()
	data, err := svc.s.Store().VCard(context.Background(), user)
	if err != nil {
		return "", ""
	}
	v := xmlel.MustParse(string(data))
	p := v.Child(NSVCard, "PHOTO")
	if p == nil {
		return "", ""
	}
	return p.ChildText(NSVCard, "TYPE"), p.ChildText(NSVCard, "BINVAL")
}

func TestVCardConversion(t *testing.T) {
	e, svc := setup(t, "alice", "bob")
	friends(e, "alice", "bob")
	a, b := connect(e, svc, "alice"), connect(e, svc, "bob")
	b.Online(NodeAvatarMetadata + "+notify")
	b.Drain()

	// vCard to PEP (XEP-0398 §3.2), with the BINVAL folded as some clients do.
	img1, b64 := makePNG(t, 4, 5)
	id1 := sha1Hex(img1)
	folded := b64[:10] + "\n  " + b64[10:]
	vc := `<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>` + folded + `</BINVAL></PHOTO></vCard>`
	wantOK(t, a.Request("set", "", vc))
	ev := b.Expect("metadata event", peptest.IsEvent(NodeAvatarMetadata))
	info := peptest.EventItems(ev)[0].Child(NodeAvatarMetadata, "metadata").Child(NodeAvatarMetadata, "info")
	if info == nil || info.Get("id") != id1 || info.Get("type") != "image/png" || info.Get("width") != "4" ||
		info.Get("height") != "5" || info.Get("bytes") != fmt.Sprint(len(img1)) {
		t.Fatalf("metadata %s", ev)
	}
	r := wantOK(t, b.Request("get", "alice@"+domain, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:data'><item id='`+id1+`'/></items></pubsub>`))
	if r.Child(NS, "pubsub").Child(NS, "items").Child(NS, "item").ChildText(NodeAvatarData, "data") != b64 {
		t.Fatalf("avatar data %s", r)
	}
	// XEP-0398 §4: alice's next presence carries the avatar hash, whatever
	// her client put there.
	a.Send(xmlel.MustParse(`<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'><photo>stale</photo></x></presence>`))
	p := b.Expect("presence with avatar hash", func(el *xmlel.Element) bool {
		return el.Name.Local == "presence" && el.Get("type") == "" && strings.HasPrefix(el.Get("from"), "alice@")
	})
	if got := p.Child(NSVCardUpdate, "x").ChildText(NSVCardUpdate, "photo"); got != id1 || len(p.ChildrenNamed(NSVCardUpdate, "x")) != 1 {
		t.Fatalf("presence hash %q, want %q: %s", got, id1, p)
	}
	// The vCard is stored as sent, and setting it again publishes nothing.
	if typ, got := vcardPhotoOf(t, svc, "alice"); typ != "image/png" || got != folded {
		t.Fatalf("stored vCard photo %q %q", typ, got)
	}
	wantOK(t, a.Request("set", "", vc))
	if evs := peptest.Events(b.Drain(), NodeAvatarMetadata); len(evs) != 0 {
		t.Fatalf("unchanged photo republished: %v", evs)
	}

	// PEP to vCard (XEP-0398 §3.1): the metadata's first info without url.
	img2, b64two := makePNG(t, 6, 6)
	id2 := sha1Hex(img2)
	wantOK(t, a.Request("set", "", publishXML(NodeAvatarData, id2, `<data xmlns='urn:xmpp:avatar:data'>`+b64two+`</data>`)))
	wantOK(t, a.Request("set", "", publishXML(NodeAvatarMetadata, id2, fmt.Sprintf(`<metadata xmlns='urn:xmpp:avatar:metadata'>`+
		`<info bytes='9' id='ffff' type='image/webp' url='https://example.org/a.webp'/>`+
		`<info bytes='%d' id='%s' type='image/png'/></metadata>`, len(img2), id2))))
	if typ, got := vcardPhotoOf(t, svc, "alice"); typ != "image/png" || got != b64two {
		t.Fatalf("vCard photo after PEP publish: %q %q", typ, got)
	}
	v, _ := svc.s.Store().VCard(context.Background(), "alice")
	if !bytes.Contains(v, []byte("<FN>Alice</FN>")) {
		t.Fatalf("other vCard fields lost: %s", v)
	}
	// Empty metadata (XEP-0084 §4.5) removes the photo.
	wantOK(t, a.Request("set", "", publishXML(NodeAvatarMetadata, "", `<metadata xmlns='urn:xmpp:avatar:metadata'/>`)))
	if typ, got := vcardPhotoOf(t, svc, "alice"); typ != "" || got != "" {
		t.Fatalf("photo kept after avatar removal: %q %q", typ, got)
	}
	// A vCard set that drops the photo publishes empty metadata.
	wantOK(t, a.Request("set", "", vc))
	b.Drain()
	wantOK(t, a.Request("set", "", `<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>`))
	ev = b.Expect("empty metadata", peptest.IsEvent(NodeAvatarMetadata))
	if m := peptest.EventItems(ev)[0].Child(NodeAvatarMetadata, "metadata"); m == nil || len(m.Elements()) != 0 {
		t.Fatalf("metadata after photo removal %s", ev)
	}
	// Other users' vCards stay forbidden; oversized ones are refused.
	if r := b.Request("set", "alice@"+domain, vc); r.Get("type") != "error" {
		t.Fatalf("bob set alice's vCard: %s", r)
	}
}
