package xmlel_test

import (
	"encoding/xml"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// benchMessage is a typical chat message as a client sends it: a body, a
// XEP-0359 origin-id, a XEP-0184 receipt request and a XEP-0085 chat state.
const benchMessage = `<message to="bob@example.org" type="chat" id="b3f1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d" xml:lang="en">` +
	`<body>Are we still on for dinner tonight? I can bring the salad.</body>` +
	`<origin-id xmlns="urn:xmpp:sid:0" id="b3f1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"/>` +
	`<request xmlns="urn:xmpp:receipts"/>` +
	`<active xmlns="http://jabber.org/protocol/chatstates"/>` +
	`</message>`

// repeatStream yields a stream header and then benchMessage forever, so one
// decoder reads message after message like the server's stream decoder does.
type repeatStream struct {
	head []byte
	msg  []byte
	off  int
}

func (r *repeatStream) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.msg[r.off:])
		n += c
		r.off = (r.off + c) % len(r.msg)
	}
	return n, nil
}

// BenchmarkDecodeMessage measures decoding one chat message from an open
// stream into an Element: the encoding/xml tokens of the message plus the
// tree xmlel.Decode builds (the server's per-stanza decode step; the server
// reads through mellium's token reader over the same encoding/xml decoder).
func BenchmarkDecodeMessage(b *testing.B) {
	r := &repeatStream{
		head: []byte(`<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" version="1.0">`),
		msg:  []byte(benchMessage),
	}
	d := xml.NewDecoder(r)
	next := func() *xmlel.Element {
		for {
			tok, err := d.Token()
			if err != nil {
				b.Fatal(err)
			}
			if t, ok := tok.(xml.StartElement); ok && t.Name.Local != "stream" {
				el, err := xmlel.Decode(d, t)
				if err != nil {
					b.Fatal(err)
				}
				return el
			}
		}
	}
	if el := next(); el.ChildText("jabber:client", "body") == "" || el.Child("urn:xmpp:receipts", "request") == nil {
		b.Fatalf("decoded %s", el)
	}
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		next()
	}
}

// BenchmarkEncodeMessage measures serializing one chat message with its
// from stamped for delivery on a c2s stream (Element.Bytes, as
// server.Session.Send does once per recipient).
func BenchmarkEncodeMessage(b *testing.B) {
	el, err := xmlel.Parse(`<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams">` + benchMessage + `</stream:stream>`)
	if err != nil {
		b.Fatal(err)
	}
	msg := el.FirstElement()
	msg.Set("from", "alice@example.org/phone-4f2a")
	out := msg.Bytes("jabber:client")
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		out = msg.Bytes("jabber:client")
	}
	if len(out) == 0 {
		b.Fatal("empty serialization")
	}
}
