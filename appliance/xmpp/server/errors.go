package server

import (
	"errors"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

// Namespaces used by the core (RFC 6120, RFC 6121).
const (
	NSClient   = "jabber:client"
	NSStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSStreams  = "urn:ietf:params:xml:ns:xmpp-streams"
	NSRoster   = "jabber:iq:roster"
	NSDelay    = "urn:xmpp:delay"
	NSSession  = "urn:ietf:params:xml:ns:xmpp-session"
	NSStreamNS = "http://etherx.jabber.org/streams"
)

// StanzaError is an error a handler returns to have an error stanza sent back
// to the sender (RFC 6120 §8.3). Type and Condition use mellium's names.
type StanzaError struct {
	Type      stanza.ErrorType
	Condition stanza.Condition
	Text      string
	// App is an optional application-specific condition (RFC 6120 §8.3.2),
	// for example XEP-0060's <precondition-not-met/>.
	App *xmlel.Element
}

func (e *StanzaError) Error() string {
	if e.Text != "" {
		return string(e.Condition) + ": " + e.Text
	}
	return string(e.Condition)
}

// Element returns the <error/> child for an error stanza (RFC 6120 §8.3.2).
func (e *StanzaError) Element() *xmlel.Element {
	el := xmlel.New(NSClient, "error", "type", string(e.Type))
	el.Add(xmlel.New(NSStanzas, string(e.Condition)))
	if e.Text != "" {
		t := xmlel.New(NSStanzas, "text")
		t.Attr = append(t.Attr, xmlAttrLang("en"))
		el.Add(t.AddText(e.Text))
	}
	if e.App != nil {
		el.Add(e.App)
	}
	return el
}

// Common stanza errors with the type RFC 6120 §8.3.3 recommends.
var (
	ErrBadRequest            = &StanzaError{Type: stanza.Modify, Condition: stanza.BadRequest}
	ErrServiceUnavailable    = &StanzaError{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable}
	ErrFeatureNotImplemented = &StanzaError{Type: stanza.Cancel, Condition: stanza.FeatureNotImplemented}
	ErrItemNotFound          = &StanzaError{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
	ErrForbidden             = &StanzaError{Type: stanza.Auth, Condition: stanza.Forbidden}
	ErrNotAllowed            = &StanzaError{Type: stanza.Cancel, Condition: stanza.NotAllowed}
	ErrNotAcceptable         = &StanzaError{Type: stanza.Modify, Condition: stanza.NotAcceptable}
	ErrJIDMalformed          = &StanzaError{Type: stanza.Modify, Condition: stanza.JIDMalformed}
	ErrInternal              = &StanzaError{Type: stanza.Cancel, Condition: stanza.InternalServerError}
	ErrRemoteServerNotFound  = &StanzaError{Type: stanza.Cancel, Condition: stanza.RemoteServerNotFound}
	ErrResourceConstraint    = &StanzaError{Type: stanza.Wait, Condition: stanza.ResourceConstraint}
	ErrNotAuthorized         = &StanzaError{Type: stanza.Auth, Condition: stanza.NotAuthorized}
)

// Errorf returns a StanzaError like base with a human-readable text.
func Errorf(base *StanzaError, text string) *StanzaError {
	e := *base
	e.Text = text
	return &e
}

// asStanzaError converts any handler error to a StanzaError; unknown errors
// become internal-server-error.
func asStanzaError(err error) *StanzaError {
	var se *StanzaError
	if errors.As(err, &se) {
		return se
	}
	return ErrInternal
}

// ErrorReply builds the error stanza answering st (RFC 6120 §8.3.1): same
// name and id, swapped addresses, type "error". Messages and presence carry
// their original children back; an IQ carries only its payload's empty
// element, so the sender can match it but no content (a password, a large
// vCard) is echoed.
func ErrorReply(st *xmlel.Element, se *StanzaError) *xmlel.Element {
	r := xmlel.New(st.Name.Space, st.Name.Local)
	if id := st.Get("id"); id != "" {
		r.Set("id", id)
	}
	r.Set("type", "error")
	r.Set("from", st.Get("to"))
	r.Set("to", st.Get("from"))
	if st.Name.Local == "iq" {
		if p := st.FirstElement(); p != nil {
			r.Add(&xmlel.Element{Name: p.Name, Attr: p.Attr})
		}
	} else {
		for _, c := range st.Children {
			if ce, ok := c.(*xmlel.Element); ok && ce.Name.Local == "error" {
				continue
			}
			r.Add(c)
		}
	}
	return r.Add(se.Element())
}

// streamError carries a stream-level error (RFC 6120 §4.9) to the code that
// owns the connection, which writes it and closes the stream.
type streamError struct {
	cond stream.Error
	text string
}

func (e *streamError) Error() string {
	if e.text != "" {
		return e.cond.Err + ": " + e.text
	}
	return e.cond.Err
}

func newStreamError(cond stream.Error, text string) *streamError {
	return &streamError{cond: cond, text: text}
}

// bytes renders <stream:error/> followed by the closing stream tag.
func (e *streamError) bytes() []byte {
	el := xmlel.New(NSStreamNS, "error")
	el.Add(xmlel.New(NSStreams, e.cond.Err))
	if e.text != "" {
		el.Add(xmlel.New(NSStreams, "text").AddText(e.text))
	}
	b := []byte("<stream:error>")
	for _, c := range el.Elements() {
		b = c.Append(b, NSStreamNS)
	}
	return append(b, "</stream:error></stream:stream>"...)
}
