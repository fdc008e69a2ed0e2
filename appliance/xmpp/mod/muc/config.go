package muc

import (
	"errors"
	"strconv"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// Values of RoomConfig.WhoIs (muc#roomconfig_whois, XEP-0045 §10.2).
const (
	WhoIsAnyone     = "anyone"     // non-anonymous room
	WhoIsModerators = "moderators" // semi-anonymous room
)

// Values of RoomConfig.AllowPM (muc#roomconfig_allowpm): who may send
// private messages (XEP-0045 §7.5).
const (
	PMAnyone       = "anyone"
	PMParticipants = "participants"
	PMModerators   = "moderators"
	PMNone         = "none"
)

// RoomConfig is a room's configuration (XEP-0045 §10.2, the
// muc#roomconfig form). It is stored as JSON with the room.
type RoomConfig struct {
	// Name is the room's natural-language name (muc#roomconfig_roomname).
	Name string `json:"name,omitempty"`
	// Description is a short description (muc#roomconfig_roomdesc).
	Description string `json:"description,omitempty"`
	// Language is the room's language tag (muc#roomconfig_lang).
	Language string `json:"lang,omitempty"`
	// Persistent rooms stay when the last occupant leaves
	// (muc#roomconfig_persistentroom).
	Persistent bool `json:"persistent"`
	// Public rooms are listed in the service's disco#items; others are
	// hidden (muc#roomconfig_publicroom).
	Public bool `json:"public"`
	// MembersOnly rooms admit only members, admins and owners
	// (muc#roomconfig_membersonly); others get registration-required.
	MembersOnly bool `json:"members_only"`
	// Moderated rooms give occupants without affiliation the visitor role:
	// they need voice to speak (muc#roomconfig_moderatedroom).
	Moderated bool `json:"moderated"`
	// Password, if not "", must be given to enter
	// (muc#roomconfig_passwordprotectedroom, muc#roomconfig_roomsecret).
	Password string `json:"password,omitempty"`
	// WhoIs is who may see occupants' real JIDs: WhoIsAnyone or
	// WhoIsModerators (muc#roomconfig_whois).
	WhoIs string `json:"whois"`
	// MaxUsers is the most occupants at once, 0 for no limit
	// (muc#roomconfig_maxusers); owners and admins may enter beyond it.
	MaxUsers int `json:"max_users"`
	// AllowInvites lets occupants invite others; in a members-only room an
	// invitation makes the invitee a member (muc#roomconfig_allowinvites).
	// Moderators, admins and owners may always invite.
	AllowInvites bool `json:"allow_invites"`
	// ChangeSubject lets participants change the subject; moderators
	// always may (muc#roomconfig_changesubject).
	ChangeSubject bool `json:"change_subject"`
	// Archived rooms keep their messages in the room archive (XEP-0313,
	// muc#roomconfig_enablearchiving, also muc#roomconfig_enablelogging).
	Archived bool `json:"archived"`
	// AllowPM is who may send private messages: PMAnyone, PMParticipants,
	// PMModerators or PMNone (muc#roomconfig_allowpm).
	AllowPM string `json:"allow_pm"`
}

// DefaultRoomConfig is the configuration of new rooms unless the operator
// sets Options.Defaults: a family's room, members-only, persistent,
// archived, non-anonymous, hidden from the room list, where members may
// invite and change the subject.
func DefaultRoomConfig() RoomConfig {
	return RoomConfig{
		Persistent:    true,
		MembersOnly:   true,
		WhoIs:         WhoIsAnyone,
		AllowInvites:  true,
		ChangeSubject: true,
		Archived:      true,
		AllowPM:       PMAnyone,
	}
}

// validate checks the enumerated fields.
func (c *RoomConfig) validate() error {
	switch c.WhoIs {
	case WhoIsAnyone, WhoIsModerators:
	default:
		return errors.New("whois must be anyone or moderators")
	}
	switch c.AllowPM {
	case PMAnyone, PMParticipants, PMModerators, PMNone:
	default:
		return errors.New("allowpm must be anyone, participants, moderators or none")
	}
	if c.MaxUsers < 0 {
		return errors.New("maxusers must not be negative")
	}
	return nil
}

// maxUsersOptions are the choices offered for muc#roomconfig_maxusers.
var maxUsersOptions = []string{"10", "20", "30", "50", "100", "200", "none"}

// form renders the configuration form (XEP-0045 §10.2, §15.5.3).
func (c *RoomConfig) form() *xmlel.Element {
	x := xmlel.New(NSDataForm, "x", "type", "form")
	x.Add(xmlel.New(NSDataForm, "title").AddText("Room configuration"))
	x.Add(hiddenField("FORM_TYPE", NSRoomConfig))
	x.Add(field("text-single", "muc#roomconfig_roomname", "Name", c.Name))
	x.Add(field("text-single", "muc#roomconfig_roomdesc", "Description", c.Description))
	x.Add(field("text-single", "muc#roomconfig_lang", "Language", c.Language))
	x.Add(field("boolean", "muc#roomconfig_persistentroom", "Keep the room when everyone has left", boolValue(c.Persistent)))
	x.Add(field("boolean", "muc#roomconfig_publicroom", "List the room in the public directory", boolValue(c.Public)))
	x.Add(field("boolean", "muc#roomconfig_membersonly", "Only members may enter", boolValue(c.MembersOnly)))
	x.Add(field("boolean", "muc#roomconfig_moderatedroom", "Only participants with voice may speak", boolValue(c.Moderated)))
	x.Add(field("boolean", "muc#roomconfig_passwordprotectedroom", "A password is needed to enter", boolValue(c.Password != "")))
	x.Add(field("text-private", "muc#roomconfig_roomsecret", "Password", c.Password))
	x.Add(withOptions(field("list-single", "muc#roomconfig_whois", "Who may see real addresses", c.WhoIs),
		WhoIsModerators, "Moderators only", WhoIsAnyone, "Anyone"))
	mu := "none"
	if c.MaxUsers > 0 {
		mu = strconv.Itoa(c.MaxUsers)
	}
	f := field("list-single", "muc#roomconfig_maxusers", "Maximum number of occupants", mu)
	for _, o := range maxUsersOptions {
		withOptions(f, o, o)
	}
	x.Add(f)
	x.Add(field("boolean", "muc#roomconfig_allowinvites", "Occupants may invite others", boolValue(c.AllowInvites)))
	x.Add(field("boolean", "muc#roomconfig_changesubject", "Occupants may change the subject", boolValue(c.ChangeSubject)))
	x.Add(field("boolean", "muc#roomconfig_enablearchiving", "Archive messages", boolValue(c.Archived)))
	x.Add(withOptions(field("list-single", "muc#roomconfig_allowpm", "Who may send private messages", c.AllowPM),
		PMAnyone, "Anyone", PMParticipants, "Participants", PMModerators, "Moderators", PMNone, "Nobody"))
	return x
}

// apply sets the fields submitted in x (type 'submit') on a copy of c and
// returns it (XEP-0045 §10.2). Fields it does not know are ignored, as
// XEP-0004 §3.4 lets a form processor do; bad values give not-acceptable,
// a malformed form bad-request.
func (c RoomConfig) apply(x *xmlel.Element) (RoomConfig, error) {
	secretGiven, protect := false, -1
	secret := ""
	for _, f := range x.ChildrenNamed(NSDataForm, "field") {
		name := f.Get("var")
		var values []string
		for _, v := range f.ChildrenNamed(NSDataForm, "value") {
			values = append(values, v.Text())
		}
		value := ""
		if len(values) > 0 {
			value = strings.TrimSpace(values[0])
		}
		bad := func() error {
			return server.Errorf(server.ErrNotAcceptable, "invalid value for "+name)
		}
		var err error
		switch name {
		case "FORM_TYPE":
			if value != "" && value != NSRoomConfig {
				return c, server.Errorf(server.ErrBadRequest, "FORM_TYPE must be "+NSRoomConfig)
			}
		case "muc#roomconfig_roomname":
			c.Name = value
		case "muc#roomconfig_roomdesc":
			c.Description = value
		case "muc#roomconfig_lang":
			c.Language = value
		case "muc#roomconfig_persistentroom":
			c.Persistent, err = parseBool(value)
		case "muc#roomconfig_publicroom":
			c.Public, err = parseBool(value)
		case "muc#roomconfig_membersonly":
			c.MembersOnly, err = parseBool(value)
		case "muc#roomconfig_moderatedroom":
			c.Moderated, err = parseBool(value)
		case "muc#roomconfig_passwordprotectedroom":
			var b bool
			b, err = parseBool(value)
			protect = 0
			if b {
				protect = 1
			}
		case "muc#roomconfig_roomsecret":
			secretGiven = true
			if len(values) > 0 {
				secret = values[0]
			}
		case "muc#roomconfig_whois":
			if value != WhoIsAnyone && value != WhoIsModerators {
				return c, bad()
			}
			c.WhoIs = value
		case "muc#roomconfig_maxusers":
			if value == "" || value == "none" || value == "0" {
				c.MaxUsers = 0
				break
			}
			n, perr := strconv.Atoi(value)
			if perr != nil || n < 0 {
				return c, bad()
			}
			c.MaxUsers = n
		case "muc#roomconfig_allowinvites":
			c.AllowInvites, err = parseBool(value)
		case "muc#roomconfig_changesubject":
			c.ChangeSubject, err = parseBool(value)
		case "muc#roomconfig_enablearchiving", "muc#roomconfig_enablelogging":
			c.Archived, err = parseBool(value)
		case "muc#roomconfig_allowpm":
			switch value {
			case PMAnyone, PMParticipants, PMModerators, PMNone:
				c.AllowPM = value
			default:
				return c, bad()
			}
		case "":
			return c, server.Errorf(server.ErrBadRequest, "a form field without 'var'")
		}
		if err != nil {
			return c, bad()
		}
	}
	switch {
	case protect == 0:
		c.Password = ""
	case secretGiven:
		c.Password = secret
	}
	if protect == 1 && c.Password == "" {
		return c, server.Errorf(server.ErrNotAcceptable, "a password-protected room needs a password")
	}
	return c, nil
}

// features returns the room's muc_* disco features (XEP-0045 §6.4, §17.2).
func (c *RoomConfig) features() []string {
	pick := func(b bool, yes, no string) string {
		if b {
			return yes
		}
		return no
	}
	return []string{
		pick(c.Persistent, "muc_persistent", "muc_temporary"),
		pick(c.MembersOnly, "muc_membersonly", "muc_open"),
		pick(c.Password != "", "muc_passwordprotected", "muc_unsecured"),
		pick(c.Moderated, "muc_moderated", "muc_unmoderated"),
		pick(c.Public, "muc_public", "muc_hidden"),
		pick(c.WhoIs == WhoIsAnyone, "muc_nonanonymous", "muc_semianonymous"),
	}
}

// parseBool reads a XEP-0004 boolean ("1", "true", "0", "false"; "" is
// false).
func parseBool(s string) (bool, error) {
	switch s {
	case "1", "true":
		return true, nil
	case "0", "false", "":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

func boolValue(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// field builds a data form field with an optional label and one value
// (none when value is "" and the type is not boolean).
func field(typ, name, label, value string) *xmlel.Element {
	f := xmlel.New(NSDataForm, "field", "type", typ, "var", name)
	f.Set("label", label)
	if value != "" || typ == "boolean" {
		f.Add(xmlel.New(NSDataForm, "value").AddText(value))
	}
	return f
}

// hiddenField builds a hidden field such as FORM_TYPE.
func hiddenField(name, value string) *xmlel.Element {
	return xmlel.New(NSDataForm, "field", "type", "hidden", "var", name).
		Add(xmlel.New(NSDataForm, "value").AddText(value))
}

// withOptions adds <option label><value/></option> pairs (value, label, ...)
// to a list field; a single argument is its own label.
func withOptions(f *xmlel.Element, pairs ...string) *xmlel.Element {
	for i := 0; i < len(pairs); i += 2 {
		label := pairs[i]
		if i+1 < len(pairs) {
			label = pairs[i+1]
		}
		f.Add(xmlel.New(NSDataForm, "option", "label", label).Add(xmlel.New(NSDataForm, "value").AddText(pairs[i])))
	}
	return f
}

// formValues returns the values of the fields of a submitted form by var.
func formValues(x *xmlel.Element) map[string]string {
	out := make(map[string]string)
	for _, f := range x.ChildrenNamed(NSDataForm, "field") {
		out[f.Get("var")] = strings.TrimSpace(f.ChildText(NSDataForm, "value"))
	}
	return out
}
