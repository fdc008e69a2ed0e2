package lean

import "strings"

// StreamHeader returns the XML declaration and the opening tag of a client
// stream to domain (RFC 6120 §4.7), default namespace jabber:client.
func StreamHeader(domain string) []byte {
	return []byte("<?xml version='1.0'?><stream:stream to='" + Escape(domain) +
		"' version='1.0' xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
}

// StreamClose is the closing tag of a stream (RFC 6120 §4.4). Do not modify.
var StreamClose = []byte("</stream:stream>")

// Escape escapes s for an XML attribute value (either quote) or character
// data (XML 1.0 §2.4). It allocates only if s has a character to escape.
func Escape(s string) string {
	if !strings.ContainsAny(s, `<>&'"`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '\'':
			b.WriteString("&apos;")
		case '"':
			b.WriteString("&quot;")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// RegisterSet is the XEP-0077 §3.1 registration request (IQ set, id reg2)
// for username user with password.
func RegisterSet(user, password string) []byte {
	return []byte("<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>" + Escape(user) +
		"</username><password>" + Escape(password) + "</password></query></iq>")
}

// JoinPresence is a MUC join of occupant (room@service/nick) without
// history (XEP-0045 §7.2.1, §7.2.15).
func JoinPresence(occupant string) []byte {
	return []byte("<presence to='" + Escape(occupant) + "'><x xmlns='" + nsMUC +
		"'><history maxstanzas='0'/></x></presence>")
}

// RoomConfig is the XEP-0045 §10.1 owner form (IQ set, id roomcfg) the
// creator of room (bare room JID) submits: with open false an empty
// submission (an instant room, §10.1.2, the server's default
// configuration); with open true only muc#roomconfig_membersonly=0 (§10.2),
// since some servers (Hearth) make new rooms members-only by default.
func RoomConfig(room string, open bool) []byte {
	form := ""
	if open {
		form = "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>" +
			"<field var='muc#roomconfig_membersonly'><value>0</value></field>"
	}
	return []byte("<iq type='set' id='roomcfg' to='" + Escape(room) + "'><query xmlns='" + nsMUCOwner +
		"'><x xmlns='jabber:x:data' type='submit'>" + form + "</x></query></iq>")
}

// Message is a message stanza to the JID to of type typ ("chat",
// "groupchat"...) with body (RFC 6121 §5.2).
func Message(to, typ, body string) []byte {
	return []byte("<message to='" + Escape(to) + "' type='" + Escape(typ) + "'><body>" + Escape(body) +
		"</body></message>")
}

// MessageWithReceipt is [Message] with id as the stanza's id and its
// origin-id (XEP-0359 §3.1), and a delivery receipt request (XEP-0184 §4):
// what a modern client sends.
func MessageWithReceipt(to, typ, id, body string) []byte {
	return []byte("<message to='" + Escape(to) + "' type='" + Escape(typ) + "' id='" + Escape(id) + "'><body>" +
		Escape(body) + "</body><origin-id xmlns='urn:xmpp:sid:0' id='" + Escape(id) +
		"'/><request xmlns='urn:xmpp:receipts'/></message>")
}

// BareJID returns j without its resource (RFC 7622 §3.1: localpart@domainpart).
func BareJID(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		return j[:i]
	}
	return j
}
