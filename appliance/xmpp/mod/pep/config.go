package pep

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// Access models (XEP-0060 §4.5) a node's pubsub#access_model can take.
const (
	// AccessOpen lets anyone retrieve items.
	AccessOpen = "open"
	// AccessPresence lets the owner and contacts with a presence
	// subscription ('from' or 'both' in the owner's roster) retrieve items;
	// the XEP-0163 §5 default.
	AccessPresence = "presence"
	// AccessRoster is treated like AccessPresence: roster groups
	// (pubsub#roster_groups_allowed) are not supported, so every contact
	// with a presence subscription is allowed.
	AccessRoster = "roster"
	// AccessWhitelist lets only the owner retrieve items (whitelists other
	// than the owner cannot be managed), as XEP-0223 private storage needs.
	AccessWhitelist = "whitelist"
)

// Values of pubsub#send_last_published_item (XEP-0060 §16.4.3).
const (
	// SendLastNever never sends the last item unasked (XEP-0402 bookmarks).
	SendLastNever = "never"
	// SendLastOnSub sends it on explicit subscription, which this service
	// does not support, so it acts like SendLastNever.
	SendLastOnSub = "on_sub"
	// SendLastOnSubAndPresence also sends it to newly available resources
	// (XEP-0163 §4.3.4); the default.
	SendLastOnSubAndPresence = "on_sub_and_presence"
)

// Config is a node configuration (XEP-0060 §16.4.3 pubsub#node_config). It
// is stored as JSON with the node; fields missing from stored JSON take the
// values of DefaultConfig.
type Config struct {
	// Title is pubsub#title, free text.
	Title string `json:"title,omitempty"`
	// AccessModel is pubsub#access_model: one of the Access* constants.
	AccessModel string `json:"access_model"`
	// PersistItems is pubsub#persist_items. A node that does not persist
	// items keeps only its last item, for last-item delivery (XEP-0060
	// §6.1.7) and retrieval.
	PersistItems bool `json:"persist_items"`
	// MaxItems is pubsub#max_items: how many items the node keeps, the
	// oldest being dropped first. 0 means "max", the service's limit
	// (Options MaxItems); larger values are kept as given but the service's
	// limit still applies.
	MaxItems int `json:"max_items"`
	// DeliverNotifications is pubsub#deliver_notifications: whether event
	// notifications are sent at all.
	DeliverNotifications bool `json:"deliver_notifications"`
	// DeliverPayloads is pubsub#deliver_payloads: whether notifications
	// carry the item payload or only the item id.
	DeliverPayloads bool `json:"deliver_payloads"`
	// NotifyRetract is pubsub#notify_retract: whether retracting items (and
	// purging the node) notifies, unless the retract request says otherwise
	// (XEP-0060 §7.2.2.1).
	NotifyRetract bool `json:"notify_retract"`
	// NotifyDelete is pubsub#notify_delete: whether deleting the node
	// notifies (XEP-0060 §8.4.2).
	NotifyDelete bool `json:"notify_delete"`
	// SendLastPublishedItem is pubsub#send_last_published_item; only
	// SendLastOnSubAndPresence makes the service send the last item to
	// newly available resources (XEP-0163 §4.3.4).
	SendLastPublishedItem string `json:"send_last_published_item"`
}

// DefaultConfig returns the configuration of a node created without one
// (XEP-0163 §5 "smart defaults"): access model presence, one persistent
// item, notifications with payloads, retract notifications, delete
// notifications, and last-item delivery on presence.
func DefaultConfig() Config {
	return Config{
		AccessModel:           AccessPresence,
		PersistItems:          true,
		MaxItems:              1,
		DeliverNotifications:  true,
		DeliverPayloads:       true,
		NotifyRetract:         true,
		NotifyDelete:          true,
		SendLastPublishedItem: SendLastOnSubAndPresence,
	}
}

// PrivateConfig returns the configuration XEP-0223 §4 prescribes for private
// data (bookmarks, for example): whitelist access, persistent items, as many
// items as the service allows, no last-item delivery on presence.
func PrivateConfig() Config {
	c := DefaultConfig()
	c.AccessModel = AccessWhitelist
	c.MaxItems = 0
	c.SendLastPublishedItem = SendLastNever
	return c
}

// keep returns how many items a node with this configuration keeps under
// the service limit limit.
func (c Config) keep(limit int) int {
	switch {
	case !c.PersistItems:
		return 1
	case c.MaxItems <= 0 || c.MaxItems > limit:
		return limit
	default:
		return c.MaxItems
	}
}

func (c Config) marshal() []byte {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // a struct of strings, bools and ints always marshals
	}
	return b
}

func unmarshalConfig(b []byte) (Config, error) {
	c := DefaultConfig()
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("pep: stored node configuration: %w", err)
	}
	return c, nil
}

// configField is one pubsub#node_config field (XEP-0060 §16.4.3).
type configField struct {
	name, typ, label string
	options          []string
	get              func(*Config) string
	set              func(*Config, string) error
}

func boolValue(s string) (bool, error) {
	switch strings.TrimSpace(s) {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}

func boolString(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func boolField(name, label string, p func(*Config) *bool) configField {
	return configField{name: name, typ: "boolean", label: label,
		get: func(c *Config) string { return boolString(*p(c)) },
		set: func(c *Config, v string) error {
			b, err := boolValue(v)
			*p(c) = b
			return err
		}}
}

func listField(name, label string, options []string, p func(*Config) *string) configField {
	return configField{name: name, typ: "list-single", label: label, options: options,
		get: func(c *Config) string { return *p(c) },
		set: func(c *Config, v string) error {
			v = strings.TrimSpace(v)
			for _, o := range options {
				if v == o {
					*p(c) = v
					return nil
				}
			}
			return fmt.Errorf("%q is not one of %s", v, strings.Join(options, ", "))
		}}
}

// configFields lists the supported configuration fields in form order.
var configFields = []configField{
	{name: "pubsub#title", typ: "text-single", label: "A friendly name for the node",
		get: func(c *Config) string { return c.Title },
		set: func(c *Config, v string) error { c.Title = v; return nil }},
	listField("pubsub#access_model", "Who may retrieve items",
		[]string{AccessOpen, AccessPresence, AccessRoster, AccessWhitelist},
		func(c *Config) *string { return &c.AccessModel }),
	boolField("pubsub#persist_items", "Persist items to storage", func(c *Config) *bool { return &c.PersistItems }),
	{name: "pubsub#max_items", typ: "text-single", label: "Max number of items to persist (a number or 'max')",
		get: func(c *Config) string {
			if c.MaxItems <= 0 {
				return "max"
			}
			return strconv.Itoa(c.MaxItems)
		},
		set: func(c *Config, v string) error {
			v = strings.TrimSpace(v)
			if v == "max" {
				c.MaxItems = 0
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("max_items %q is neither a positive number nor 'max'", v)
			}
			c.MaxItems = n
			return nil
		}},
	boolField("pubsub#deliver_notifications", "Deliver event notifications", func(c *Config) *bool { return &c.DeliverNotifications }),
	boolField("pubsub#deliver_payloads", "Deliver payloads with event notifications", func(c *Config) *bool { return &c.DeliverPayloads }),
	boolField("pubsub#notify_retract", "Notify subscribers when items are removed from the node", func(c *Config) *bool { return &c.NotifyRetract }),
	boolField("pubsub#notify_delete", "Notify subscribers when the node is deleted", func(c *Config) *bool { return &c.NotifyDelete }),
	listField("pubsub#send_last_published_item", "When to send the last published item",
		[]string{SendLastNever, SendLastOnSub, SendLastOnSubAndPresence},
		func(c *Config) *string { return &c.SendLastPublishedItem }),
	{name: "pubsub#publish_model", typ: "list-single", label: "Who may publish", options: []string{"publishers"},
		get: func(*Config) string { return "publishers" },
		set: func(_ *Config, v string) error {
			if strings.TrimSpace(v) != "publishers" {
				return fmt.Errorf("publish_model %q is not supported: only the owner publishes (XEP-0163 §2.2)", v)
			}
			return nil
		}},
}

func findField(name string) *configField {
	for i := range configFields {
		if configFields[i].name == name {
			return &configFields[i]
		}
	}
	return nil
}

// formField is a field of a submitted data form (XEP-0004 §3.2).
type formField struct {
	name   string
	values []string
}

// dataForm is a parsed data form (XEP-0004): its type, FORM_TYPE and other
// fields in order.
type dataForm struct {
	typ, formType string
	fields        []formField
}

func parseForm(x *xmlel.Element) dataForm {
	f := dataForm{typ: x.Get("type")}
	for _, fl := range x.ChildrenNamed(NSData, "field") {
		ff := formField{name: fl.Get("var")}
		for _, v := range fl.ChildrenNamed(NSData, "value") {
			ff.values = append(ff.values, v.Text())
		}
		if ff.name == "FORM_TYPE" {
			if len(ff.values) > 0 {
				f.formType = strings.TrimSpace(ff.values[0])
			}
			continue
		}
		f.fields = append(f.fields, ff)
	}
	return f
}

// value returns the single value of a field ("" for none).
func (f formField) value() string {
	if len(f.values) == 0 {
		return ""
	}
	return f.values[0]
}

// apply sets the submitted fields on c; an unknown field or an invalid value
// is an error naming it.
func (f dataForm) apply(c *Config) error {
	for _, ff := range f.fields {
		cf := findField(ff.name)
		if cf == nil {
			return fmt.Errorf("field %s is not supported", ff.name)
		}
		if len(ff.values) > 1 {
			return fmt.Errorf("field %s takes one value", ff.name)
		}
		if err := cf.set(c, ff.value()); err != nil {
			return fmt.Errorf("field %s: %w", ff.name, err)
		}
	}
	return nil
}

// unmet returns a description of the first publish-option (XEP-0060 §7.1.5)
// the configuration c does not satisfy, or "" if all are met. Values are
// compared after normalisation ("true" equals "1", for example).
func (f dataForm) unmet(c Config) string {
	for _, ff := range f.fields {
		cf := findField(ff.name)
		if cf == nil {
			return ff.name + " is not a supported publish option"
		}
		want := c
		if len(ff.values) > 1 || cf.set(&want, ff.value()) != nil {
			return fmt.Sprintf("%s %q is not a valid value", ff.name, strings.Join(ff.values, " "))
		}
		if got, w := cf.get(&c), cf.get(&want); got != w {
			return fmt.Sprintf("%s is %s, not %s", ff.name, got, w)
		}
	}
	return ""
}

// configForm renders c as a pubsub#node_config form (XEP-0060 §8.2.1) of
// type typ ("form" for a configuration request, "result" elsewhere).
func configForm(c Config, typ string) *xmlel.Element {
	x := xmlel.New(NSData, "x", "type", typ)
	x.Add(xmlel.New(NSData, "field", "var", "FORM_TYPE", "type", "hidden").
		Add(xmlel.New(NSData, "value").AddText(NSNodeConfig)))
	for i := range configFields {
		cf := &configFields[i]
		fl := xmlel.New(NSData, "field", "var", cf.name, "type", cf.typ, "label", cf.label)
		for _, o := range cf.options {
			fl.Add(xmlel.New(NSData, "option", "label", o).Add(xmlel.New(NSData, "value").AddText(o)))
		}
		if v := cf.get(&c); v != "" {
			fl.Add(xmlel.New(NSData, "value").AddText(v))
		}
		x.Add(fl)
	}
	return x
}
