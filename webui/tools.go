package webui

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/backup"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/upload"
)

// Limits of an announcement, in bytes.
const (
	MaxSubjectBytes      = 200
	MaxAnnouncementBytes = 4000
)

type announceView struct {
	adminView
	Available     bool
	Subject, Body string
}

// announcePage is GET /admin/announce.
func (u *UI) announcePage(w http.ResponseWriter, r *http.Request, s *session) {
	v := announceView{adminView: u.adminView(w, r, s), Available: u.cfg.Server != nil}
	if n := r.URL.Query().Get("sent"); n != "" {
		v.Notice = "The announcement went to " + n + " accounts."
	}
	u.render(w, r, http.StatusOK, announcePage(v))
}

// announce is POST /admin/announce with subject (optional) and body:
// Announce with a subject.
func (u *UI) announce(w http.ResponseWriter, r *http.Request, s *session) {
	subject, body := r.PostFormValue("subject"), r.PostFormValue("body")
	fail := func(status int, text string) {
		v := announceView{adminView: u.adminView(w, r, s), Available: u.cfg.Server != nil,
			Subject: strings.TrimSpace(subject), Body: normalizeText(body)}
		v.Error = text
		u.render(w, r, status, announcePage(v))
	}
	n, err := u.announceTo(r.Context(), subject, body, s.user)
	switch {
	case errors.Is(err, ErrNoServer):
		fail(http.StatusServiceUnavailable, "Announcements need the chat server, which is not running here.")
		return
	case errors.Is(err, ErrInvalidAnnouncement) && normalizeText(body) == "":
		fail(http.StatusBadRequest, "Write the announcement first.")
		return
	case errors.Is(err, ErrInvalidAnnouncement):
		fail(http.StatusBadRequest, "The announcement is too long or contains characters that are not allowed.")
		return
	case err != nil:
		u.log.Error("web: sending an announcement failed", "err", err)
		fail(http.StatusInternalServerError, "The announcement could not be sent.")
		return
	}
	http.Redirect(w, r, "/admin/announce?sent="+strconv.Itoa(n), http.StatusSeeOther)
}

type circleRow struct {
	Name    string
	Members []string
	// Room is the bare JID of the circle's group chat, "" if none.
	Room string
}

type circlesView struct {
	adminView
	Circles []circleRow
	Users   []string
	// Confirm is the circle whose deletion awaits confirmation, nil if none.
	Confirm *circleRow
	// ConfirmClose is the circle whose group chat's closing awaits
	// confirmation, nil if none.
	ConfirmClose *circleRow
}

// circlesPage is GET /admin/circles.
func (u *UI) circlesPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	notice := ""
	switch q.Get("done") {
	case "created":
		notice = "The circle " + q.Get("circle") + " is created: add people to it below."
	case "deleted":
		notice = "The circle " + q.Get("circle") + " is deleted. Its members stay in each other's contacts."
	case "joined":
		notice = q.Get("user") + " joined " + q.Get("circle") + "."
	case "left":
		notice = q.Get("user") + " left " + q.Get("circle") + ". They stay in the other members' contacts until someone removes them."
	case "chat-on":
		notice = "The circle " + q.Get("circle") + " has a group chat now: its members' apps show it."
	case "chat-off":
		notice = "The group chat of " + q.Get("circle") + " is closed. The circle and its members stay."
	}
	u.showCircles(w, r, s, http.StatusOK, "", notice)
}

func (u *UI) showCircles(w http.ResponseWriter, r *http.Request, s *session, status int, errText, notice string) {
	u.renderCircles(w, r, s, status, circlesView{adminView: adminView{Error: errText, Notice: notice}})
}

// renderCircles renders the circles page; v carries the error, notice or
// deletion to confirm.
func (u *UI) renderCircles(w http.ResponseWriter, r *http.Request, s *session, status int, v circlesView) {
	circles, err := u.cfg.Invites.Circles(r.Context())
	var accts []store.Account
	if err == nil {
		accts, err = u.cfg.Store.Accounts(r.Context())
	}
	if err != nil {
		u.log.Error("web: listing circles failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	av := u.adminView(w, r, s)
	av.Error, av.Notice = v.Error, v.Notice
	v.adminView = av
	for _, c := range circles {
		v.Circles = append(v.Circles, circleRow{Name: c.Name, Members: c.Members, Room: c.Room})
	}
	for _, a := range accts {
		v.Users = append(v.Users, a.Username)
	}
	u.render(w, r, status, circlesPage(v))
}

// circlesJoin is POST /admin/circles/join with circle and username: the
// account joins the circle (created if new) and gets mutual subscriptions
// with its members (invite.Service.JoinCircle, XEP-0379 style).
func (u *UI) circlesJoin(w http.ResponseWriter, r *http.Request, s *session) {
	circle, user := strings.TrimSpace(r.PostFormValue("circle")), r.PostFormValue("username")
	err := u.cfg.Invites.JoinCircle(r.Context(), circle, user)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u.showCircles(w, r, s, http.StatusNotFound, "No such account.", "")
		return
	case err != nil && invite.ValidCircleName(circle) != nil:
		u.showCircles(w, r, s, http.StatusBadRequest, "A circle's name has 1 to 100 characters.", "")
		return
	case err != nil:
		u.log.Error("web: joining a circle failed", "err", err)
		u.showCircles(w, r, s, http.StatusInternalServerError, "The member could not be added.", "")
		return
	}
	u.log.Info("web: circle joined", "circle", circle, "user", user, "by", s.user)
	http.Redirect(w, r, "/admin/circles?done=joined&user="+url.QueryEscape(user)+"&circle="+url.QueryEscape(circle), http.StatusSeeOther)
}

// circleDeleteWords says what deleting c does to its members.
func circleDeleteWords(c circleRow) string {
	switch len(c.Members) {
	case 0:
		return "It has no members."
	case 1:
		return c.Members[0] + " leaves it."
	}
	return "Its " + strconv.Itoa(len(c.Members)) + " members leave it, but they keep each other in their contacts: each person can remove contacts in their app."
}

// circlesCreate is POST /admin/circles/create with name and, for a group
// chat (a members-only XEP-0045 room that follows the circle's members),
// chat=1: invite.Service.CreateCircle.
func (u *UI) circlesCreate(w http.ResponseWriter, r *http.Request, s *session) {
	name, chat := strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("chat") != ""
	if err := invite.ValidCircleName(name); err != nil {
		u.showCircles(w, r, s, http.StatusBadRequest, "A circle's name has 1 to 100 characters, without control characters.", "")
		return
	}
	err := u.cfg.Invites.CreateCircle(r.Context(), name, chat)
	switch {
	case errors.Is(err, store.ErrExists):
		u.showCircles(w, r, s, http.StatusConflict, "There is already a circle named "+name+".", "")
		return
	case errors.Is(err, invite.ErrNoGroupChat):
		u.showCircles(w, r, s, http.StatusConflict, "Group chats are not available on this Hearth: create the circle without one.", "")
		return
	case err != nil:
		u.log.Error("web: creating a circle failed", "circle", name, "chat", chat, "err", err)
		text := "The circle could not be created."
		if chat {
			text = "The circle and its group chat could not be created. Please try again later."
		}
		u.showCircles(w, r, s, http.StatusInternalServerError, text, "")
		return
	}
	u.log.Info("web: circle created", "circle", name, "chat", chat, "by", s.user)
	http.Redirect(w, r, "/admin/circles?done=created&circle="+url.QueryEscape(name), http.StatusSeeOther)
}

// circlesDelete is POST /admin/circles/delete with name: without
// confirm=1 it shows what deleting would do and asks again; with it,
// invite.Service.DeleteCircle (the group chat, if any, is destroyed; the
// members keep each other in their rosters).
func (u *UI) circlesDelete(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PostFormValue("name")
	if r.PostFormValue("confirm") != "1" {
		u.confirmCircle(w, r, s, name, func(v *circlesView, c *circleRow) { v.Confirm = c })
		return
	}
	err := u.cfg.Invites.DeleteCircle(r.Context(), name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u.showCircles(w, r, s, http.StatusNotFound, "No such circle.", "")
		return
	case errors.Is(err, invite.ErrNoGroupChat):
		u.showCircles(w, r, s, http.StatusConflict, "This circle has a group chat, but the group chat service is not running: it cannot be deleted now.", "")
		return
	case err != nil:
		u.log.Error("web: deleting a circle failed", "circle", name, "err", err)
		u.showCircles(w, r, s, http.StatusInternalServerError, "The circle could not be deleted. Please try again later.", "")
		return
	}
	u.log.Info("web: circle deleted", "circle", name, "by", s.user)
	http.Redirect(w, r, "/admin/circles?done=deleted&circle="+url.QueryEscape(name), http.StatusSeeOther)
}

// confirmCircle renders the circles page asking to confirm a change of
// the circle name (set puts it in the view), or answers 404 if there is
// no such circle.
func (u *UI) confirmCircle(w http.ResponseWriter, r *http.Request, s *session, name string, set func(*circlesView, *circleRow)) {
	circles, err := u.cfg.Invites.Circles(r.Context())
	if err != nil {
		u.log.Error("web: listing circles failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	for _, c := range circles {
		if c.Name == name {
			var v circlesView
			set(&v, &circleRow{Name: c.Name, Members: c.Members, Room: c.Room})
			u.renderCircles(w, r, s, http.StatusOK, v)
			return
		}
	}
	u.showCircles(w, r, s, http.StatusNotFound, "No such circle.", "")
}

// circlesChat is POST /admin/circles/chat with name and on=1 to give the
// circle a group chat (a members-only XEP-0045 room with its members in
// it and bookmarked), or on=0 to close it: without confirm=1 closing
// shows what it does and asks again; with it, the room is destroyed
// (invite.Service.SetCircleChat). The circle and its members stay.
func (u *UI) circlesChat(w http.ResponseWriter, r *http.Request, s *session) {
	name, on := r.PostFormValue("name"), r.PostFormValue("on") == "1"
	if !on && r.PostFormValue("confirm") != "1" {
		u.confirmCircle(w, r, s, name, func(v *circlesView, c *circleRow) { v.ConfirmClose = c })
		return
	}
	err := u.cfg.Invites.SetCircleChat(r.Context(), name, on)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u.showCircles(w, r, s, http.StatusNotFound, "No such circle.", "")
		return
	case errors.Is(err, invite.ErrNoGroupChat) && on:
		u.showCircles(w, r, s, http.StatusConflict, "Group chats are not available on this Hearth.", "")
		return
	case errors.Is(err, invite.ErrNoGroupChat):
		u.showCircles(w, r, s, http.StatusConflict, "The group chat service is not running: the group chat cannot be closed now.", "")
		return
	case err != nil:
		u.log.Error("web: changing a circle's group chat failed", "circle", name, "chat", on, "err", err)
		text := "The group chat could not be closed. Please try again later."
		if on {
			text = "The group chat could not be created. Please try again later."
		}
		u.showCircles(w, r, s, http.StatusInternalServerError, text, "")
		return
	}
	u.log.Info("web: circle group chat changed", "circle", name, "chat", on, "by", s.user)
	done := "chat-off"
	if on {
		done = "chat-on"
	}
	http.Redirect(w, r, "/admin/circles?done="+done+"&circle="+url.QueryEscape(name), http.StatusSeeOther)
}

// circlesLeave is POST /admin/circles/leave with circle and username:
// invite.Service.LeaveCircle (also out of the circle's group chat). The
// roster entries made when the account joined stay (each person decides).
func (u *UI) circlesLeave(w http.ResponseWriter, r *http.Request, s *session) {
	circle, user := r.PostFormValue("circle"), r.PostFormValue("username")
	err := u.cfg.Invites.LeaveCircle(r.Context(), circle, user)
	if errors.Is(err, store.ErrNotFound) {
		u.showCircles(w, r, s, http.StatusNotFound, "No such circle.", "")
		return
	}
	if err != nil {
		u.log.Error("web: leaving a circle failed", "err", err)
		u.showCircles(w, r, s, http.StatusInternalServerError, "The member could not be removed.", "")
		return
	}
	u.log.Info("web: circle left", "circle", circle, "user", user, "by", s.user)
	http.Redirect(w, r, "/admin/circles?done=left&user="+url.QueryEscape(user)+"&circle="+url.QueryEscape(circle), http.StatusSeeOther)
}

type backupView struct {
	adminView
	Available bool
	Uploads   string
}

// backupPage is GET /admin/backup.
func (u *UI) backupPage(w http.ResponseWriter, r *http.Request, s *session) {
	v := backupView{adminView: u.adminView(w, r, s), Available: u.cfg.DataDir != ""}
	if us, err := upload.Usage(r.Context(), u.cfg.Store); err == nil {
		v.Uploads = strconv.FormatInt(us.Files, 10) + " files, " + humanBytes(us.Bytes)
	}
	u.render(w, r, http.StatusOK, backupPage(v))
}

// backupDownload is POST /admin/backup (uploads=1 adds the uploaded
// files): the data directory as a .tar.gz download (package backup), with
// a consistent snapshot of the database.
func (u *UI) backupDownload(w http.ResponseWriter, r *http.Request, s *session) {
	if u.cfg.DataDir == "" {
		u.message(w, r, http.StatusServiceUnavailable, "Not available", "This Hearth has no data directory to back up.")
		return
	}
	name := "hearth-" + u.cfg.Domain + "-" + u.now().Format("2006-01-02-1504") + ".tar.gz"
	u.log.Info("web: backup started", "by", s.user, "uploads", r.PostFormValue("uploads") != "")
	d := &download{w: w, contentType: "application/gzip", filename: name}
	err := backup.Write(r.Context(), d, u.cfg.Store, u.cfg.DataDir, backup.Options{Uploads: r.PostFormValue("uploads") != "", Now: u.now()})
	if err != nil {
		u.log.Error("web: backup failed", "err", err)
		u.failDownload(w, r, d, "The backup could not be made.")
		return
	}
	u.log.Info("web: backup done", "by", s.user)
}

// download sends its headers (200, attachment) with the first bytes, so
// that a failure before any byte can still become an error page.
type download struct {
	w                     http.ResponseWriter
	contentType, filename string
	started               bool
}

func (d *download) Write(p []byte) (int, error) {
	if !d.started {
		d.started = true
		h := d.w.Header()
		h.Set("Content-Type", d.contentType)
		h.Set("Content-Disposition", `attachment; filename="`+d.filename+`"`)
		d.w.WriteHeader(http.StatusOK)
	}
	return d.w.Write(p)
}

// failDownload answers a failed download: an error page when nothing was
// sent yet, else it aborts the connection so that the browser reports the
// download as failed instead of keeping a cut file.
func (u *UI) failDownload(w http.ResponseWriter, r *http.Request, d *download, text string) {
	if !d.started {
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", text+" Please try again later.")
		return
	}
	panic(http.ErrAbortHandler)
}
