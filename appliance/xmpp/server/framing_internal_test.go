package server

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// recordSink records what an outFramer hands on.
type recordSink struct{ units []string }

func (r *recordSink) open(h streamHeader, _ time.Time) error {
	r.units = append(r.units, "OPEN from="+h.from+" id="+h.id+" version="+h.version+" lang="+h.lang)
	return nil
}

func (r *recordSink) element(el []byte, stream bool, _ time.Time) error {
	prefix := "EL "
	if stream {
		prefix = "STREAM "
	}
	r.units = append(r.units, prefix+string(el))
	return nil
}

func (r *recordSink) close(time.Time) error {
	r.units = append(r.units, "CLOSE")
	return nil
}

// TestOutFramerUnits: the server's output, however it is cut into writes,
// becomes one unit per top-level element with the stream header's namespace
// declarations (RFC 7395 §3.3.3), the header and the closing tag apart.
func TestOutFramerUnits(t *testing.T) {
	out := `<?xml version="1.0" encoding="UTF-8"?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' id='abc' from='example.test' xml:lang='en'>` +
		`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>` +
		"\n " +
		`<message to="a@example.test" id="x&apos;>"><body>1 &lt; 2 &gt; 0 '"</body></message>` +
		`<iq type="result" id="1"/>` +
		`<r xmlns="urn:xmpp:sm:3"/>` +
		`<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error></stream:stream>`
	want := []string{
		"OPEN from=example.test id=abc version=1.0 lang=en",
		`STREAM <stream:features xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>`,
		`EL <message xmlns='jabber:client' to="a@example.test" id="x&apos;>"><body>1 &lt; 2 &gt; 0 '"</body></message>`,
		`EL <iq xmlns='jabber:client' type="result" id="1"/>`,
		`EL <r xmlns="urn:xmpp:sm:3"/>`,
		`STREAM <stream:error xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>`,
		"CLOSE",
	}
	for _, size := range []int{len(out), 1, 2, 7, 64} {
		var f outFramer
		sink := &recordSink{}
		for i := 0; i < len(out); i += size {
			end := min(i+size, len(out))
			if err := f.write([]byte(out[i:end]), sink, time.Time{}); err != nil {
				t.Fatalf("write size %d: %v", size, err)
			}
		}
		if got := strings.Join(sink.units, "\n"); got != strings.Join(want, "\n") {
			t.Errorf("writes of %d bytes:\ngot:\n%s\nwant:\n%s", size, got, strings.Join(want, "\n"))
		}
	}
}

// TestOutFramerRestart: a new stream header on an open stream (the restart
// after SASL, RFC 6120 §6.4.6) is a new header unit.
func TestOutFramerRestart(t *testing.T) {
	var f outFramer
	sink := &recordSink{}
	in := `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1' version='1.0'>` +
		`<success xmlns="urn:ietf:params:xml:ns:xmpp-sasl"/>` +
		`<?xml version="1.0" encoding="UTF-8"?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='2' version='1.0'><stream:features/>`
	if err := f.write([]byte(in), sink, time.Time{}); err != nil {
		t.Fatal(err)
	}
	want := "OPEN from= id=1 version=1.0 lang=\n" +
		`EL <success xmlns="urn:ietf:params:xml:ns:xmpp-sasl"/>` + "\n" +
		"OPEN from= id=2 version=1.0 lang=\n" +
		`STREAM <stream:features xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'/>`
	if got := strings.Join(sink.units, "\n"); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestInbox: reads see pushed bytes in order, a deadline fails a waiting
// read without ending the input, and the closing error comes after the data.
func TestInbox(t *testing.T) {
	b := newInbox(0)
	b.setDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 4)
	if _, err := b.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read before data: %v, want a deadline error", err)
	}
	b.setDeadline(time.Time{})
	if _, err := b.push(t.Context(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	b.closeWith(io.ErrUnexpectedEOF)
	got, err := io.ReadAll(b)
	if string(got) != "hello" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadAll = %q, %v; want hello, unexpected EOF", got, err)
	}
	if _, err := b.push(t.Context(), []byte("x")); err == nil {
		t.Fatal("push after close succeeded")
	}
}
