package server

import (
	"bytes"
	"encoding/xml"
	"io"
	"net"
	"strings"
	"testing"
)

func filterString(t *testing.T, chunks ...string) string {
	t.Helper()
	c := &wsFilterConn{}
	var out bytes.Buffer
	for _, ch := range chunks {
		b := []byte(ch)
		out.Write(b[:c.filter(b)])
	}
	return out.String()
}

func TestWhitespaceFilter(t *testing.T) {
	head := "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
	for _, tc := range []struct{ in, want string }{
		{head + "\n<starttls/>\n", "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><starttls/>"},
		// Whitespace inside elements, attribute values and CDATA is kept.
		{head + " <message a='x > y'> <body> two  spaces </body> </message> ", "<message a='x > y'> <body> two  spaces </body> </message>"},
		{head + "<m><![CDATA[ <a> ]]]> ]]> </m> \n", "<m><![CDATA[ <a> ]]]> ]]> </m>"},
		{head + "<a/>  <b x=\"/\"/>\t<c></c>", "<a/><b x=\"/\"/><c></c>"},
		// A restarted stream on the same connection resets the depth.
		{head + "<auth>x</auth>\n" + "<stream:stream xmlns='jabber:client'>\n<iq/>\n", "<auth>x</auth><stream:stream xmlns='jabber:client'><iq/>"},
	} {
		got := filterString(t, tc.in)
		got = strings.TrimPrefix(got, "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
		want := strings.TrimPrefix(tc.want, "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
		if got != want {
			t.Errorf("filter(%q)\n got %q\nwant %q", tc.in, got, want)
		}
		// Byte-at-a-time gives the same result (state survives chunking).
		var chunks []string
		for i := range tc.in {
			chunks = append(chunks, tc.in[i:i+1])
		}
		if again := strings.TrimPrefix(filterString(t, chunks...), "<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"); again != want {
			t.Errorf("chunked filter(%q) = %q", tc.in, again)
		}
	}
}

// Whatever the input, the filtered stream decodes to the same tokens except
// whitespace-only text directly inside the stream element.
func FuzzWhitespaceFilter(f *testing.F) {
	f.Add("<a x='1'> <b/> text <![CDATA[ ]]> </a>\n<c/>")
	f.Add("<a><!-- c --> </a> <?pi ?> <b>\t</b>")
	f.Fuzz(func(t *testing.T, body string) {
		doc := "<stream:stream xmlns:stream='s'>" + body
		a, b := net.Pipe()
		go func() { a.Write([]byte(doc)); a.Close() }()
		var filtered bytes.Buffer
		io.Copy(&filtered, &wsFilterConn{Conn: b})
		want := tokens(doc)
		got := tokens(filtered.String())
		if want != got {
			t.Fatalf("tokens differ:\n orig %s\n filt %s", want, got)
		}
	})
}

// tokens renders the decodable prefix of doc, ignoring whitespace directly
// inside the stream element.
func tokens(doc string) string {
	d := xml.NewDecoder(strings.NewReader(doc))
	d.Strict = true
	var b strings.Builder
	depth := 0
	for {
		tok, err := d.RawToken()
		if err != nil {
			return b.String()
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			b.WriteString("<" + t.Name.Local + ">")
		case xml.EndElement:
			depth--
			b.WriteString("</" + t.Name.Local + ">")
		case xml.CharData:
			if depth == 1 {
				// Whitespace directly in the stream is what the filter drops;
				// anything else there ends the stream with an error, like a
				// decoding error, so nothing after it matters.
				if len(bytes.TrimSpace(t)) == 0 {
					continue
				}
				return b.String()
			}
			b.WriteString("[" + string(t) + "]")
		default:
			// A comment, PI or directive ends a stream with restricted-xml
			// (RFC 6120 §11.1): nothing after it matters.
			b.WriteString("?")
			return b.String()
		}
	}
}
