package adhoc

import "github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"

// NSData is the data forms namespace (XEP-0004 §3.1), the usual payload of
// a command (XEP-0050 §3.5.1).
const NSData = "jabber:x:data"

// Form types (XEP-0004 §3.1).
const (
	FormForm   = "form"
	FormSubmit = "submit"
	FormCancel = "cancel"
	FormResult = "result"
)

// NewForm returns an empty <x xmlns='jabber:x:data' type=typ/> with the
// given title and instructions (each left out when "") (XEP-0004 §3.1).
// Add fields with Add(Field(…)).
func NewForm(typ, title, instructions string) *xmlel.Element {
	x := xmlel.New(NSData, "x", "type", typ)
	if title != "" {
		x.Add(xmlel.New(NSData, "title").AddText(title))
	}
	if instructions != "" {
		x.Add(xmlel.New(NSData, "instructions").AddText(instructions))
	}
	return x
}

// Field returns a <field/> (XEP-0004 §3.2) named name of type typ
// ("text-single", "list-single", "hidden", "boolean"…; "" leaves the type
// out, meaning text-single) with label (left out when "") and values.
func Field(name, typ, label string, values ...string) *xmlel.Element {
	f := xmlel.New(NSData, "field", "var", name)
	f.Set("type", typ)
	f.Set("label", label)
	for _, v := range values {
		f.Add(xmlel.New(NSData, "value").AddText(v))
	}
	return f
}

// Hidden returns the hidden FORM_TYPE field naming the form's type
// (XEP-0068 §3).
func Hidden(name, value string) *xmlel.Element { return Field(name, "hidden", "", value) }

// WithOptions adds <option label=…><value>…</value></option> children to a
// list field f from label/value pairs (XEP-0004 §3.2) and returns f.
func WithOptions(f *xmlel.Element, pairs ...string) *xmlel.Element {
	for i := 0; i+1 < len(pairs); i += 2 {
		o := xmlel.New(NSData, "option")
		o.Set("label", pairs[i])
		f.Add(o.Add(xmlel.New(NSData, "value").AddText(pairs[i+1])))
	}
	return f
}

// Required marks f as required (XEP-0004 §3.2) and returns it.
func Required(f *xmlel.Element) *xmlel.Element { return f.Add(xmlel.New(NSData, "required")) }

// FormValues returns the values of the field named name in form x, nil if
// x is nil or has no such field.
func FormValues(x *xmlel.Element, name string) []string {
	if x == nil {
		return nil
	}
	for _, f := range x.ChildrenNamed(NSData, "field") {
		if f.Get("var") != name {
			continue
		}
		var out []string
		for _, v := range f.ChildrenNamed(NSData, "value") {
			out = append(out, v.Text())
		}
		return out
	}
	return nil
}

// FormValue returns the first value of the field named name in x, or "".
func FormValue(x *xmlel.Element, name string) string {
	if v := FormValues(x, name); len(v) > 0 {
		return v[0]
	}
	return ""
}
