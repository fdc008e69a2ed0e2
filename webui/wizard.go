package webui

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/ddns"
)

// wizardSteps are the setup steps in order; the index + 1 is the number
// shown, the name is the path below /setup/.
var wizardSteps = []struct{ Name, Title string }{
	{"admin", "Your administrator account"},
	{"domain", "Your domain"},
	{"certs", "Certificates"},
	{"reach", "Reachable from the internet"},
	{"done", "Done"},
}

// dnsRecord is one record to create at the DNS provider.
type dnsRecord struct {
	Name, Type, Value string
}

// wizardView is what a wizard page shows.
type wizardView struct {
	Step                            int // 1-based
	Title, CSRF, Domain, Error      string
	Username, Admin                 string
	NeedCode                        bool
	Records                         []dnsRecord
	Status                          *StepStatus // nil: the check is not available yet
	Site                            siteForm    // step 2's form
	Chosen                          bool        // step 2: a domain choice was saved
	Checks                          []ddns.RecordCheck
	CheckOK                         bool
	CheckSummary                    string
	Reach                           reachView // step 4
	InviteLink, InviteURI, InviteQR string
}

// wizardTitles lists the steps for the progress list.
func wizardTitles() []string {
	out := make([]string, len(wizardSteps))
	for i, s := range wizardSteps {
		out[i] = s.Title
	}
	return out
}

// records are the DNS records the served domain needs (RFC 6120 §3.2.1
// SRV for clients and servers, XEP-0368 direct TLS, and the component
// subdomains) with the configured ports.
func (u *UI) records() []dnsRecord {
	domain := u.cfg.Domain
	d := domain + "."
	out := []dnsRecord{{domain, "A / AAAA", "your public IPv4 / IPv6 address"}}
	for _, s := range []struct {
		name      string
		port, def int
	}{
		{"_xmpp-client._tcp.", u.cfg.C2SPort, 5222},
		{"_xmpps-client._tcp.", u.cfg.C2STLSPort, 5223},
		{"_xmpp-server._tcp.", u.cfg.S2SPort, 5269},
	} {
		if s.port == 0 {
			s.port = s.def
		}
		if s.port > 0 {
			out = append(out, dnsRecord{s.name + domain, "SRV", "0 5 " + strconv.Itoa(s.port) + " " + d})
		}
	}
	comps := []string{"groups." + domain, "upload." + domain}
	if u.cfg.Server != nil {
		comps = u.cfg.Server.Components()
	}
	for _, c := range comps {
		out = append(out, dnsRecord{c, "CNAME", d})
	}
	return out
}

// wizardGate applies the wizard's access rules and reports whether the
// request may go on: local network only; step 1 only while no
// administrator exists; later steps only for the browser that created the
// administrator.
func (u *UI) wizardGate(w http.ResponseWriter, r *http.Request, step int) (*session, bool) {
	if !isLocal(r) {
		u.log.Info("web: setup wizard refused to a non-local address", "ip", clientAddr(r))
		u.message(w, r, http.StatusForbidden, "Not available from here",
			"The setup wizard only answers on the local network: open it from a computer or phone at home, connected to the same router as Hearth.")
		return nil, false
	}
	s := u.currentSession(r)
	if s != nil && !s.wizard {
		s = nil
	}
	has, err := u.cfg.Store.HasAdmin(r.Context())
	if err != nil {
		u.log.Error("web: reading roles failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return nil, false
	}
	switch {
	case step == 1 && has && s != nil:
		http.Redirect(w, r, "/setup/domain", http.StatusSeeOther)
		return nil, false
	case step == 1 && has:
		u.message(w, r, http.StatusNotFound, "Hearth is set up", "The setup wizard has finished. Administrators log in at /admin/login.")
		return nil, false
	case step > 1 && s == nil:
		http.Redirect(w, r, "/setup", http.StatusSeeOther)
		return nil, false
	}
	if s != nil {
		// The wizard's session stays an administrator's: one whose role
		// was taken away (or whose account is gone) cannot go on.
		role, err := u.cfg.Store.Role(r.Context(), s.user)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			u.log.Error("web: reading a role failed", "err", err)
			u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
			return nil, false
		}
		if err != nil || role != store.RoleAdmin {
			u.endSessions("", s.id)
			u.message(w, r, http.StatusForbidden, "Not an administrator", "This account no longer administers Hearth.")
			return nil, false
		}
	}
	return s, true
}

func (u *UI) wizardGet(w http.ResponseWriter, r *http.Request) {
	step := 1
	if name := r.PathValue("step"); name != "" {
		step = 0
		for i, s := range wizardSteps {
			if s.Name == name {
				step = i + 1
			}
		}
		if step == 0 {
			u.message(w, r, http.StatusNotFound, "Not found", "There is no such setup step.")
			return
		}
	}
	s, ok := u.wizardGate(w, r, step)
	if !ok {
		return
	}
	v := u.wizardView(w, r, step, s)
	u.render(w, r, http.StatusOK, wizardPage(v, wizardTitles()))
}

func (u *UI) wizardView(w http.ResponseWriter, r *http.Request, step int, s *session) wizardView {
	v := wizardView{Step: step, Title: wizardSteps[step-1].Title, CSRF: u.csrfToken(w, r), Domain: u.cfg.Domain,
		NeedCode: u.cfg.SetupCode != ""}
	if s != nil {
		v.Admin = s.user + "@" + u.cfg.Domain
	}
	var f StepFunc
	switch wizardSteps[step-1].Name {
	case "domain":
		v.Records = u.records()
		v.Site = u.siteFormFrom()
		v.Chosen = u.cfg.Site.DNS != ""
		f = u.cfg.DomainStatus
		if v.Chosen && u.cfg.CheckDNS != nil {
			v.Checks = u.cfg.CheckDNS(r.Context())
			v.CheckOK, v.CheckSummary = checkSummary(v.Checks)
		}
	case "certs":
		f = u.cfg.CertStatus
	case "reach":
		v.Reach = u.reachView()
	}
	if v.Chosen && len(v.Checks) > 0 && u.cfg.Site.DNS == DNSManual {
		// The check's table says it all (DomainStatus would run it again).
		f = nil
	}
	if f != nil {
		st := f(r.Context())
		v.Status = &st
	}
	return v
}

// wizardAdmin is step 1: POST /setup with the setup code (if one is
// configured), username, password and password2 creates the first
// administrator and continues the wizard as that account.
func (u *UI) wizardAdmin(w http.ResponseWriter, r *http.Request) {
	if _, ok := u.wizardGate(w, r, 1); !ok || !u.checkCSRF(w, r) {
		return
	}
	username := r.PostFormValue("username")
	fail := func(status int, text string) {
		v := u.wizardView(w, r, 1, nil)
		v.Username, v.Error = username, text
		u.render(w, r, status, wizardPage(v, wizardTitles()))
	}
	ip := clientAddr(r)
	if code := u.cfg.SetupCode; code != "" {
		if !u.throttle.Allow(ip, "") {
			fail(http.StatusTooManyRequests, "Too many wrong setup codes. Wait a few minutes, then try again.")
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("code")), []byte(code)) != 1 {
			u.throttle.RecordFailure(ip, "")
			u.log.Info("web: wrong setup code", "ip", ip)
			fail(http.StatusForbidden, "That setup code is not right. It is printed on the card that came with Hearth.")
			return
		}
	}
	password := r.PostFormValue("password")
	if password != r.PostFormValue("password2") {
		fail(http.StatusBadRequest, "The two passwords are not the same.")
		return
	}
	user, err := u.cfg.Invites.NormalizeUsername(username)
	if err != nil {
		fail(http.StatusBadRequest, errorText(err))
		return
	}
	if len(password) < 8 {
		fail(http.StatusBadRequest, "Choose a password of at least 8 characters: this account controls the server.")
		return
	}
	keys, err := account.Keys(password)
	if err != nil {
		fail(http.StatusBadRequest, errorText(invite.ErrInvalidPassword))
		return
	}
	err = u.cfg.Store.CreateFirstAdmin(r.Context(), user, keys)
	switch {
	case errors.Is(err, store.ErrAdminExists):
		u.message(w, r, http.StatusConflict, "Hearth is set up", "Another administrator was created meanwhile. Log in at /admin/login.")
		return
	case errors.Is(err, store.ErrExists):
		fail(http.StatusConflict, errorText(invite.ErrUsernameTaken))
		return
	case err != nil:
		u.log.Error("web: creating the administrator failed", "err", err)
		fail(http.StatusInternalServerError, errorText(err))
		return
	}
	u.log.Info("web: setup wizard created the administrator", "user", user, "ip", ip)
	u.startSession(w, r, user, true)
	http.Redirect(w, r, "/setup/domain", http.StatusSeeOther)
}

// wizardInvite is step 5: POST /setup/done creates a first invitation from
// the administrator and shows it as a link and a QR code.
func (u *UI) wizardInvite(w http.ResponseWriter, r *http.Request) {
	s, ok := u.wizardGate(w, r, 5)
	if !ok || !u.checkCSRF(w, r) {
		return
	}
	inv, err := u.cfg.Invites.Create(r.Context(), invite.Options{Inviter: s.user, Note: "created by the setup wizard"})
	v := u.wizardView(w, r, 5, s)
	if err != nil {
		u.log.Error("web: creating the first invitation failed", "err", err)
		v.Error = "The invitation could not be created."
		u.render(w, r, http.StatusInternalServerError, wizardPage(v, wizardTitles()))
		return
	}
	v.InviteLink = invite.Link(u.cfg.BaseURL, inv.Token)
	v.InviteURI = invite.URI(u.cfg.Domain, inv.Token)
	v.InviteQR, _ = qrSVG(v.InviteLink, "QR code of the invitation")
	u.render(w, r, http.StatusOK, wizardPage(v, wizardTitles()))
}
