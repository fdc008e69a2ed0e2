package webui

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/ddns/reach"
)

// DefaultReachTimeout bounds one reachability check when
// Config.ReachTimeout is 0: a few STUN servers and a TCP connection per
// port, a few seconds each.
const DefaultReachTimeout = 60 * time.Second

// reachResult is the last reachability verdict and when it was made.
type reachResult struct {
	verdict reach.Verdict
	at      time.Time
}

// reachRecord is the stored form (JSON in the settings table, under
// settingReachLast) of the last verdict, so that it is still shown after
// a restart.
type reachRecord struct {
	Verdict reach.Verdict `json:"verdict"`
	At      time.Time     `json:"at"`
}

// loadReach returns the stored last verdict, nil if none (or unreadable:
// logged).
func (u *UI) loadReach() *reachResult {
	v, err := u.cfg.Store.Setting(context.Background(), settingReachLast)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	var rec reachRecord
	if err == nil {
		err = json.Unmarshal([]byte(v), &rec)
	}
	if err != nil {
		u.log.Warn("web: reading the last reachability verdict failed", "err", err)
		return nil
	}
	return &reachResult{verdict: rec.Verdict, at: rec.At}
}

// saveReach stores res as the last verdict (failures are logged).
func (u *UI) saveReach(ctx context.Context, res *reachResult) {
	b, err := json.Marshal(reachRecord{Verdict: res.verdict, At: res.at})
	if err == nil {
		err = u.cfg.Store.SetSetting(ctx, settingReachLast, string(b))
	}
	if err != nil {
		u.log.Warn("web: storing the reachability verdict failed", "err", err)
	}
}

// reachPortRow is one line of the ports table.
type reachPortRow struct {
	Port, Purpose, Router, Hairpin string
}

// reachView is what the wizard's step 4 and the admin's network page show.
type reachView struct {
	// Available is false when this Hearth cannot check (no Config.Reach).
	Available bool
	// Busy: another check is running right now.
	Busy bool
	// Checked is when the verdict was made, "" if never.
	Checked                  string
	OK                       bool
	Kind, Headline, Summary  string
	Steps                    []string
	Public, RouterWAN, Extra string
	Ports                    []reachPortRow
}

// reachHeadline says a verdict's kind in plain words, and whether Hearth is
// reachable.
func reachHeadline(k reach.Kind) (string, bool) {
	switch k {
	case reach.Direct:
		return "Reachable: Hearth has a public address of its own", true
	case reach.Mapped:
		return "Reachable: your router opened Hearth's ports", true
	case reach.Partial:
		return "Partly reachable: your router opened only some ports", false
	case reach.Manual:
		return "Not reachable yet: the ports must be forwarded in the router", false
	case reach.CGNAT:
		return "Not reachable over IPv4: your provider shares one address among many customers", false
	case reach.DoubleNAT:
		return "Not reachable yet: there are two routers in a row", false
	default:
		return "Could not check whether Hearth is reachable", false
	}
}

// reachView builds the view of the last verdict.
func (u *UI) reachView() reachView {
	v := reachView{Available: u.cfg.Reach != nil}
	if !v.Available {
		return v
	}
	if u.reachRun.TryLock() {
		u.reachRun.Unlock()
	} else {
		v.Busy = true
	}
	u.reachMu.Lock()
	last := u.reachLast
	u.reachMu.Unlock()
	if last == nil {
		return v
	}
	vd := last.verdict
	v.Checked = last.at.Format("15:04 on 2 January 2006")
	v.Kind = string(vd.Kind)
	v.Headline, v.OK = reachHeadline(vd.Kind)
	v.Summary, v.Steps = vd.Summary, vd.Steps
	if vd.Public.IsValid() {
		v.Public = vd.Public.String()
	}
	if vd.RouterWAN.IsValid() {
		v.RouterWAN = vd.RouterWAN.String()
	}
	if vd.IPv6 {
		v.Extra = "Hearth also has a public IPv6 address."
	}
	for _, p := range vd.Ports {
		row := reachPortRow{
			Port: strconv.Itoa(int(p.Port.Number)) + "/" + p.Port.Protocol, Purpose: p.Port.Purpose,
			Router: "not mapped", Hairpin: "not tried",
		}
		switch {
		case p.Mapped:
			row.Router = "opened by the router"
		case p.MapErr != "":
			row.Router = "refused by the router: " + p.MapErr
		}
		switch p.Hairpin {
		case "ok":
			row.Hairpin = "reached Hearth"
		case "failed":
			row.Hairpin = "no answer (many routers cannot loop back, so this alone proves nothing)"
		}
		v.Ports = append(v.Ports, row)
	}
	return v
}

// runReach runs one check (unless one is running: then it reports false)
// bounded by the configured timeout, and keeps the verdict.
func (u *UI) runReach(ctx context.Context) bool {
	if u.cfg.Reach == nil || !u.reachRun.TryLock() {
		return false
	}
	defer u.reachRun.Unlock()
	timeout := u.cfg.ReachTimeout
	if timeout <= 0 {
		timeout = DefaultReachTimeout
	}
	// The check goes on if the browser gives up waiting: its result is
	// shown on the next visit.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	v := u.cfg.Reach(ctx)
	res := &reachResult{verdict: v, at: u.now()}
	u.reachMu.Lock()
	u.reachLast = res
	u.reachMu.Unlock()
	u.saveReach(ctx, res)
	u.log.Info("web: reachability checked", "kind", v.Kind)
	return true
}

// wizardReach is step 4's "Check now": POST /setup/reach.
func (u *UI) wizardReach(w http.ResponseWriter, r *http.Request) {
	if _, ok := u.wizardGate(w, r, 4); !ok || !u.checkCSRF(w, r) {
		return
	}
	u.runReach(r.Context())
	http.Redirect(w, r, "/setup/reach", http.StatusSeeOther)
}

type networkView struct {
	adminView
	Reach reachView
}

// networkPage is GET /admin/network: the last reachability verdict.
func (u *UI) networkPage(w http.ResponseWriter, r *http.Request, s *session) {
	u.render(w, r, http.StatusOK, networkPage(networkView{adminView: u.adminView(w, r, s), Reach: u.reachView()}))
}

// networkCheck is POST /admin/network/check: run the check now.
func (u *UI) networkCheck(w http.ResponseWriter, r *http.Request, s *session) {
	u.runReach(r.Context())
	http.Redirect(w, r, "/admin/network", http.StatusSeeOther)
}
