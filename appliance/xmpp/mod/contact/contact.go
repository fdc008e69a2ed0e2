// Package contact implements XEP-0157 Contact Addresses for XMPP Services: the
// server publishes the administrators', abuse, support, etc. addresses in its
// disco#info as a XEP-0128 data form.
package contact

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// FormType is the FORM_TYPE of the form (XEP-0157 §3, XEP-0128 §2).
const FormType = "http://jabber.org/network/serverinfo"

// NSData is the data forms namespace (XEP-0004 §3.1) of the XEP-0128 §2 form.
const NSData = "jabber:x:data"

// Fields lists the form fields registered for contact addresses (XEP-0157
// §7.1); these are the keys Register accepts.
var Fields = []string{
	"abuse-addresses",
	"admin-addresses",
	"feedback-addresses",
	"sales-addresses",
	"security-addresses",
	"status-addresses",
	"support-addresses",
}

// Register adds the contact addresses addrs (keys from Fields, values URIs
// such as "mailto:admin@example.org" or "xmpp:admin@example.org", XEP-0157
// §3) to the server's disco#info as a form with FORM_TYPE
// http://jabber.org/network/serverinfo (XEP-0128). Fields are listed in the
// order of Fields, values in the given order with duplicates dropped; keys
// with no values are left out, and nothing is added when no address is
// configured. It returns an error, adding nothing, for an unknown key or a
// value that is not an absolute URI.
func Register(s *server.Server, addrs map[string][]string) error {
	form, err := Form(addrs)
	if err != nil || form == nil {
		return err
	}
	s.AddExtension(form)
	return nil
}

// Form builds the XEP-0157 §3 data form for addrs, or returns nil if addrs
// holds no address. See Register for the rules.
func Form(addrs map[string][]string) (*xmlel.Element, error) {
	known := make(map[string]bool, len(Fields))
	for _, f := range Fields {
		known[f] = true
	}
	keys := make([]string, 0, len(addrs))
	for k := range addrs {
		if !known[k] {
			return nil, fmt.Errorf("contact: unknown contact address field %q (want one of %s)", k, strings.Join(Fields, ", "))
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	form := xmlel.New(NSData, "x", "type", "result")
	form.Add(xmlel.New(NSData, "field", "var", "FORM_TYPE", "type", "hidden").
		Add(xmlel.New(NSData, "value").AddText(FormType)))
	n := 0
	for _, k := range keys {
		field := xmlel.New(NSData, "field", "var", k, "type", "list-multi")
		seen := make(map[string]bool)
		for _, v := range addrs[k] {
			v = strings.TrimSpace(v)
			if seen[v] {
				continue
			}
			if u, err := url.Parse(v); err != nil || u.Scheme == "" || (u.Opaque == "" && u.Host == "" && u.Path == "") {
				return nil, fmt.Errorf("contact: %s: %q is not a URI (use mailto:, xmpp: or https:)", k, v)
			}
			seen[v] = true
			field.Add(xmlel.New(NSData, "value").AddText(v))
		}
		if len(seen) > 0 {
			form.Add(field)
			n += len(seen)
		}
	}
	if n == 0 {
		return nil, nil
	}
	return form, nil
}
