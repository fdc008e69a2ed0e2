package xmpptest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"github.com/xdg-go/scram"
)

// Namespaces of XEP-0388 SASL2 and the extensions inlined in it.
const (
	NSSASL2 = "urn:xmpp:sasl:2"
	NSBind2 = "urn:xmpp:bind:0"
	NSFAST  = "urn:xmpp:fast:0"
	NSSASL  = "urn:ietf:params:xml:ns:xmpp-sasl"
)

// SASL2 describes one XEP-0388 authentication attempt for Client.AuthSASL2.
type SASL2 struct {
	// Mechanism is SCRAM-SHA-1/256/512 (with -PLUS for tls-exporter
	// channel binding), PLAIN, or one of the XEP-0484 HT-SHA-256-NONE,
	// -EXPR, -ENDP, -UNIQ.
	Mechanism string
	// User is the localpart; Password is for SCRAM and PLAIN, Token for HT.
	User, Password, Token string
	// AgentID, Software and Device make up <user-agent/>; it is left out
	// when all three are empty.
	AgentID, Software, Device string
	// Inline is raw XML appended inside <authenticate/> (Bind 2 <bind/>,
	// XEP-0198 <resume/>, XEP-0484 <request-token/> and <fast/>).
	Inline string
}

// DialSASL2 connects to addr, negotiates STARTTLS (with at most TLS version
// maxTLS, 0 for the default) and returns the client and the features
// offered after TLS, ready for AuthSASL2.
func DialSASL2(t testing.TB, addr, domain string, maxTLS uint16) (*Client, *xmlel.Element) {
	t.Helper()
	c := Dial(t, addr, domain)
	c.OpenStream()
	f := c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: domain, MaxVersion: maxTLS})
	return c, f
}

// isSASL2Outcome matches the elements that may answer a SASL2 message.
func isSASL2Outcome(e *xmlel.Element) bool {
	return e.Name.Space == NSSASL2 && (e.Name.Local == "challenge" || e.Name.Local == "success" || e.Name.Local == "failure")
}

// AuthSASL2 runs one XEP-0388 attempt and returns the server's <success/>
// or <failure/>. It verifies the server's additional data on success
// (SCRAM server signature, HT responder proof) and, when the
// authorization identifier is a full JID, records it as c.JID. The
// stream features that may follow <success/> stay queued.
func (c *Client) AuthSASL2(a SASL2) *xmlel.Element {
	c.t.Helper()
	var (
		conv   *scram.ClientConversation
		verify func([]byte) bool
		first  []byte
	)
	switch {
	case strings.HasPrefix(a.Mechanism, "SCRAM-"):
		gen := scram.SHA256
		switch {
		case strings.HasPrefix(a.Mechanism, "SCRAM-SHA-1"):
			gen = scram.SHA1
		case strings.HasPrefix(a.Mechanism, "SCRAM-SHA-512"):
			gen = scram.SHA512
		}
		cl, err := gen.NewClient(a.User, a.Password, "")
		if err != nil {
			c.t.Fatalf("scram client: %v", err)
		}
		conv = cl.NewConversation()
		if strings.HasSuffix(a.Mechanism, "-PLUS") {
			cs := c.tlsState()
			cb, err := scram.NewTLSExporterBinding(&cs)
			if err != nil {
				c.t.Fatalf("channel binding: %v", err)
			}
			conv = cl.NewConversationWithChannelBinding(cb)
		}
		msg, err := conv.Step("")
		if err != nil {
			c.t.Fatalf("scram: %v", err)
		}
		first = []byte(msg)
	case a.Mechanism == "PLAIN":
		first = []byte("\x00" + a.User + "\x00" + a.Password)
	case strings.HasPrefix(a.Mechanism, "HT-"):
		cb := c.HTChannelBinding(a.Mechanism)
		// Like deployed clients, the token's bytes are the HMAC key.
		initiator := hmacSHA256([]byte(a.Token), "Initiator", cb)
		first = append([]byte(a.User+"\x00"), initiator...)
		responder := hmacSHA256([]byte(a.Token), "Responder", cb)
		verify = func(data []byte) bool { return hmac.Equal(data, responder) }
	default:
		c.t.Fatalf("AuthSASL2: unsupported mechanism %q", a.Mechanism)
	}
	var ua string
	if a.AgentID != "" || a.Software != "" || a.Device != "" {
		ua = "<user-agent"
		if a.AgentID != "" {
			ua += " id='" + xmlEscape(a.AgentID) + "'"
		}
		ua += "><software>" + xmlEscape(a.Software) + "</software><device>" + xmlEscape(a.Device) + "</device></user-agent>"
	}
	c.Send("<authenticate xmlns='%s' mechanism='%s'><initial-response>%s</initial-response>%s%s</authenticate>",
		NSSASL2, a.Mechanism, base64.StdEncoding.EncodeToString(first), ua, a.Inline)
	el := c.Expect(isSASL2Outcome)
	if el.Name.Local == "challenge" {
		if conv == nil {
			c.t.Fatalf("unexpected challenge for %s: %s", a.Mechanism, el)
		}
		ch, _ := base64.StdEncoding.DecodeString(el.Text())
		final, err := conv.Step(string(ch))
		if err != nil {
			c.t.Fatalf("scram step: %v", err)
		}
		c.Send("<response xmlns='%s'>%s</response>", NSSASL2, base64.StdEncoding.EncodeToString([]byte(final)))
		el = c.Expect(isSASL2Outcome)
	}
	if el.Name.Local != "success" {
		return el
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(el.ChildText(NSSASL2, "additional-data")))
	if err != nil {
		c.t.Fatalf("additional-data: %v", err)
	}
	switch {
	case conv != nil:
		if _, err := conv.Step(string(data)); err != nil || !conv.Valid() {
			c.t.Fatalf("server signature invalid: %v", err)
		}
	case verify != nil:
		if !verify(data) {
			c.t.Fatalf("HT responder proof invalid: %x", data)
		}
	}
	if id := el.ChildText(NSSASL2, "authorization-identifier"); strings.Contains(id, "/") {
		c.JID = id
	}
	return el
}

// HTChannelBinding returns the channel-binding data the HT mechanism mech
// mixes into its proofs on the current connection (nil for -NONE).
func (c *Client) HTChannelBinding(mech string) []byte {
	c.t.Helper()
	if strings.HasSuffix(mech, "-NONE") {
		return nil
	}
	cs := c.tlsState()
	switch {
	case strings.HasSuffix(mech, "-EXPR"):
		cb, err := scram.NewTLSExporterBinding(&cs)
		if err != nil {
			c.t.Fatalf("tls-exporter: %v", err)
		}
		return cb.Data
	case strings.HasSuffix(mech, "-ENDP"):
		cb, err := scram.NewTLSServerEndpointBinding(&cs)
		if err != nil {
			c.t.Fatalf("tls-server-end-point: %v", err)
		}
		return cb.Data
	case strings.HasSuffix(mech, "-UNIQ"):
		return cs.TLSUnique
	}
	c.t.Fatalf("unknown HT mechanism %q", mech)
	return nil
}

func (c *Client) tlsState() tls.ConnectionState {
	c.t.Helper()
	tc, ok := c.conn.(*tls.Conn)
	if !ok {
		c.t.Fatal("not a TLS connection")
	}
	return tc.ConnectionState()
}

func hmacSHA256(key []byte, label string, cb []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(cb)
	return m.Sum(nil)
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// SASL2Mechanisms returns the mechanisms of the <authentication/> feature
// and the XEP-0484 FAST mechanisms inline in it.
func SASL2Mechanisms(features *xmlel.Element) (mechs, fast []string) {
	a := features.Child(NSSASL2, "authentication")
	if a == nil {
		return nil, nil
	}
	for _, m := range a.ChildrenNamed(NSSASL2, "mechanism") {
		mechs = append(mechs, m.Text())
	}
	if in := a.Child(NSSASL2, "inline"); in != nil {
		if f := in.Child(NSFAST, "fast"); f != nil {
			for _, m := range f.ChildrenNamed(NSFAST, "mechanism") {
				fast = append(fast, m.Text())
			}
		}
	}
	return mechs, fast
}
