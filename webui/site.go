package webui

import (
	"context"
	"errors"
	"net/http"
	"net/mail"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/ddns"
	"mellium.im/xmpp/jid"
)

// DNS modes of a SiteChoice.
const (
	// DNSManual: the family creates the DNS records at its DNS provider
	// itself; the wizard shows them and checks them live.
	DNSManual = "manual"
	// DNSCloudflare: Cloudflare serves the zone and Hearth keeps the
	// records current with an API token (dynamic DNS) and gets its
	// certificates with ACME DNS-01.
	DNSCloudflare = "cloudflare"
)

// SiteChoice is the setup wizard's domain step (issue 5, step 2): the
// domain Hearth serves and how its DNS records and certificates are made.
type SiteChoice struct {
	// Domain is the XMPP domain (RFC 6120 §2.1 domainpart), lower-case
	// ASCII without the final dot.
	Domain string
	// DNS is DNSManual or DNSCloudflare; "" in Config.Site means no choice
	// was made yet.
	DNS string
	// Zone is the Cloudflare zone holding Domain (found with
	// ddns.FindZone); "" with DNSManual.
	Zone string
	// Token is the Cloudflare API token (Zone:Read and DNS:Edit for Zone).
	// A secret: never shown on a page or logged.
	Token string
	// ACME asks for a Let's Encrypt certificate: by DNS-01 with
	// DNSCloudflare (always on there), by HTTP-01 with DNSManual (port 80
	// must be reachable from the internet).
	ACME bool
	// ACMEEmail is the optional ACME account contact (expiry warnings).
	ACMEEmail string
}

// siteForm is what the domain step's form shows.
type siteForm struct {
	Domain, DNS, Email string
	ACME               bool
	HasToken           bool // a token is stored: an empty field keeps it
}

// formMessage is an error whose text is a sentence for a form.
type formMessage string

func (m formMessage) Error() string { return string(m) }

// Domain validation errors shown on the form.
const (
	errDomainEmpty   formMessage = "Enter the domain name, like family.example.org."
	errDomainIP      formMessage = "Enter a domain name, not an IP address: phones and certificates need a name."
	errDomainInvalid formMessage = "That is not a valid domain name: use letters, digits and dashes between the dots, like family.example.org. Write international names in their xn-- form."
	errDomainLocal   formMessage = "A name that only works at home (localhost, .local, a name without dots) can only be used with “I manage DNS myself” and without a Let's Encrypt certificate."
)

// localSuffixes are names that never resolve on the internet (RFC 6761,
// RFC 6762, RFC 8375).
var localSuffixes = []string{".local", ".localhost", ".home.arpa", ".internal", ".invalid", ".lan"}

// NormalizeDomain checks s as the domain Hearth serves: a valid XMPP
// domainpart (RFC 7622 §3.2, mellium.im/xmpp/jid) made of DNS host name
// labels (letters, digits, inner dashes; 1–63 octets each, 253 in all;
// RFC 1123), not an IP address. It returns the name in lower case without
// the final dot, and whether it only works on the local network
// (localhost, a single label, .local, .home.arpa...), or an error whose
// text is a sentence for the form.
func NormalizeDomain(s string) (domain string, local bool, err error) {
	s = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	if s == "" {
		return "", false, errDomainEmpty
	}
	if _, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return "", false, errDomainIP
	}
	// mellium's domainpart rules (RFC 7622 §3.2: IDNA2008); the name is
	// kept in its ASCII form, which DNS and certificates use.
	if _, err := jid.New("", s, ""); err != nil || len(s) > 253 {
		return "", false, errDomainInvalid
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false, errDomainInvalid
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", false, errDomainInvalid
			}
		}
	}
	local = len(labels) == 1
	for _, suf := range localSuffixes {
		local = local || strings.HasSuffix(s, suf)
	}
	return s, local, nil
}

// siteFormFrom is the form prefilled from the choice in force.
func (u *UI) siteFormFrom() siteForm {
	c := u.cfg.Site
	f := siteForm{Domain: u.cfg.Domain, DNS: c.DNS, ACME: c.ACME, Email: c.ACMEEmail, HasToken: c.DNS == DNSCloudflare && c.Token != ""}
	if f.DNS == "" {
		f.DNS = DNSManual
	}
	return f
}

// zoneTimeout bounds the Cloudflare token check.
const zoneTimeout = 30 * time.Second

// wizardDomain is step 2: POST /setup/domain with domain, dns ("manual" or
// "cloudflare"), token (Cloudflare), acme ("on": a Let's Encrypt
// certificate by HTTP-01 with manual DNS) and email saves the choice
// through Config.ApplySite, which restarts the services in-process; the
// answer says so and reloads /setup/domain by itself after a few seconds.
func (u *UI) wizardDomain(w http.ResponseWriter, r *http.Request) {
	s, ok := u.wizardGate(w, r, 2)
	if !ok || !u.checkCSRF(w, r) {
		return
	}
	f := siteForm{
		Domain: r.PostFormValue("domain"), DNS: r.PostFormValue("dns"),
		Email: strings.TrimSpace(r.PostFormValue("email")), ACME: r.PostFormValue("acme") == "on",
		HasToken: u.cfg.Site.DNS == DNSCloudflare && u.cfg.Site.Token != "",
	}
	fail := func(status int, text string) {
		v := u.wizardView(w, r, 2, s)
		v.Site, v.Error = f, text
		u.render(w, r, status, wizardPage(v, wizardTitles()))
	}
	if u.cfg.ApplySite == nil {
		fail(http.StatusServiceUnavailable, "Changing the domain is not available in this version of Hearth.")
		return
	}
	domain, local, err := NormalizeDomain(f.Domain)
	if err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	f.Domain = domain
	if f.Email != "" {
		if a, err := mail.ParseAddress(f.Email); err != nil || a.Address != f.Email {
			fail(http.StatusBadRequest, "That email address is not valid. Leave the field empty if you do not want expiry warnings.")
			return
		}
	}
	c := SiteChoice{Domain: domain, DNS: f.DNS, ACMEEmail: f.Email}
	switch f.DNS {
	case DNSManual:
		c.ACME = f.ACME
		if local && c.ACME {
			fail(http.StatusBadRequest, errDomainLocal.Error())
			return
		}
	case DNSCloudflare:
		c.ACME = true
		if local {
			fail(http.StatusBadRequest, errDomainLocal.Error())
			return
		}
		c.Token = strings.TrimSpace(r.PostFormValue("token"))
		if c.Token == "" && f.HasToken {
			c.Token = u.cfg.Site.Token
		}
		if c.Token == "" {
			fail(http.StatusBadRequest, "Paste the Cloudflare API token: Hearth needs it to keep the DNS records current.")
			return
		}
		newProvider := u.cfg.NewCloudflare
		if newProvider == nil {
			newProvider = ddns.NewCloudflare
		}
		p, err := newProvider(c.Token)
		if err != nil {
			fail(http.StatusBadRequest, "That Cloudflare API token is not usable: "+err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), zoneTimeout)
		c.Zone, err = ddns.FindZone(ctx, p, domain)
		cancel()
		if err != nil {
			u.log.Info("web: the Cloudflare token check failed", "domain", domain, "err", err)
			fail(http.StatusBadRequest, zoneText(domain, err))
			return
		}
	default:
		fail(http.StatusBadRequest, "Choose who manages the domain's DNS records.")
		return
	}
	if err := u.cfg.ApplySite(r.Context(), c); err != nil {
		var nf *store.NotFreshError
		var se *SettingError
		switch {
		case errors.As(err, &nf):
			fail(http.StatusConflict, "The domain can only be changed before anyone has chatted: "+nf.Reason()+".")
			return
		case errors.As(err, &se):
			fail(http.StatusBadRequest, se.Text)
			return
		}
		u.log.Error("web: saving the domain choice failed", "domain", domain, "err", err)
		fail(http.StatusInternalServerError, "Saving the choice failed: "+err.Error())
		return
	}
	u.log.Info("web: setup wizard saved the domain", "domain", domain, "dns", c.DNS, "acme", c.ACME, "user", s.user)
	u.render(w, r, http.StatusOK, switchingPage(domain, "/setup/domain"))
}

// zoneText explains a failed ddns.FindZone in plain words.
func zoneText(domain string, err error) string {
	var zerr *ddns.ZoneError
	switch {
	case errors.As(err, &zerr) && zerr.Refused:
		return "Cloudflare refused the token: " + zerr.Err.Error() + ". Create a token with the permissions Zone:Read and DNS:Edit for your domain's zone."
	case errors.As(err, &zerr):
		return "Cloudflare does not show a zone for " + domain + " with this token (tried " + strings.Join(zerr.Tried, ", ") + "): " + zerr.Err.Error() + ". Check that the domain is in your Cloudflare account and that the token may read its zone."
	case errors.Is(err, context.DeadlineExceeded):
		return "Cloudflare did not answer in time. Check Hearth's internet connection and try again."
	}
	return "Checking the token at Cloudflare failed: " + err.Error()
}

// DNSCheckStatus is the live DNS check (ddns.CheckRecords) as a step
// status, for the system page: the summary of the wizard's table, and one
// detail line per record that is missing or wrong.
func DNSCheckStatus(checks []ddns.RecordCheck) StepStatus {
	st := StepStatus{}
	st.OK, st.Summary = checkSummary(checks)
	for _, c := range checks {
		if !c.OK {
			st.Details = append(st.Details, c.Name+" "+c.Type+": "+c.Problem)
		}
	}
	return st
}

// checkSummary is the plain-words line above the live DNS check.
func checkSummary(checks []ddns.RecordCheck) (ok bool, summary string) {
	bad := 0
	for _, c := range checks {
		if !c.OK {
			bad++
		}
	}
	switch {
	case len(checks) == 0:
		return false, "The DNS check found nothing to check."
	case bad == 0:
		return true, "All DNS records are in place."
	case bad == 1:
		return false, "One DNS record is missing or wrong. DNS changes can take a while to show: reload this page to check again."
	}
	return false, strconv.Itoa(bad) + " DNS records are missing or wrong. DNS changes can take a while to show: reload this page to check again."
}
