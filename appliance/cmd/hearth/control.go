package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hearthxmpp/hearth/appliance/control"
	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/webui"
	"mellium.im/xmpp/jid"
)

// The commands of the control socket (appliance/control) that `hearth
// serve` answers, with their arguments and results as JSON. The CLI
// commands that need the running server (announce, circle, user role,
// user reset-link, user del while it runs) send them.
const (
	// ctlAnnounce: ctlAnnounceArgs -> ctlAnnounced.
	ctlAnnounce = "announce"
	// ctlCircleList: no args -> []ctlCircle.
	ctlCircleList = "circle.list"
	// ctlCircleCreate, ctlCircleDelete, ctlCircleJoin, ctlCircleLeave:
	// ctlCircleArgs -> nothing.
	ctlCircleCreate = "circle.create"
	ctlCircleDelete = "circle.delete"
	ctlCircleJoin   = "circle.join"
	ctlCircleLeave  = "circle.leave"
	// ctlCircleChat: ctlCircleArgs (Name, Chat: on or off) -> ctlCircle,
	// the circle after the change.
	ctlCircleChat = "circle.chat"
	// ctlUserRole: ctlUserArgs (JID, Role) -> nothing.
	ctlUserRole = "user.role"
	// ctlUserResetLink: ctlUserArgs (JID) -> ctlResetLink.
	ctlUserResetLink = "user.reset-link"
	// ctlUserDelete: ctlUserArgs (JID, Now) -> ctlDeleted.
	ctlUserDelete = "user.delete"
	// ctlUserUndelete: ctlUserArgs (JID) -> nothing.
	ctlUserUndelete = "user.undelete"
	// ctlSettingsShow: no args -> webui.Settings.
	ctlSettingsShow = "settings.show"
	// ctlSettingsSet: ctlSettingArgs -> nothing.
	ctlSettingsSet = "settings.set"
	// ctlStatus: no args -> webui.SystemStatus.
	ctlStatus = "status"
	// ctlSettingsServer: ctlServerSettingsArgs -> nothing; the server
	// restarts its services to apply the values.
	ctlSettingsServer = "settings.server"
)

type ctlServerSettingsArgs struct {
	// Values maps server settings (flag names, adminFlags) to new values.
	Values map[string]string `json:"values"`
}

type ctlSettingArgs struct {
	// Name is the text's short name (webui.TextNames: welcome, terms,
	// privacy).
	Name string `json:"name"`
	// Text is the new text; "" removes it.
	Text string `json:"text"`
}

// ctlBy names the command line as the actor in the server's logs and in
// "marked for deletion by" on the users page.
const ctlBy = "hearth CLI"

type ctlAnnounceArgs struct {
	Text string `json:"text"`
}

type ctlAnnounced struct {
	// Sent is how many accounts the announcement went to.
	Sent int `json:"sent"`
}

type ctlCircleArgs struct {
	Name string `json:"name"`
	// Chat: with circle.create, the circle gets a group chat; with
	// circle.chat, the circle's group chat is opened (true) or closed.
	Chat bool `json:"chat,omitempty"`
	// JID is the account of circle.join and circle.leave (bare JID).
	JID string `json:"jid,omitempty"`
}

type ctlCircle struct {
	Name string `json:"name"`
	// Room is the circle's group chat ("" when it has none).
	Room    string   `json:"room,omitempty"`
	Members []string `json:"members"`
}

type ctlUserArgs struct {
	// JID is the account's bare JID.
	JID string `json:"jid"`
	// Role is the new role of user.role: limited, normal or admin.
	Role string `json:"role,omitempty"`
	// Now: user.delete deletes at once instead of after the grace period.
	Now bool `json:"now,omitempty"`
}

type ctlResetLink struct {
	Link    string    `json:"link"`
	Expires time.Time `json:"expires"`
}

type ctlDeleted struct {
	// DeleteOn is when the account will be gone; zero when it is gone now.
	DeleteOn time.Time `json:"delete_on,omitzero"`
}

// startControl serves the control socket DATA/control.sock until ctx ends,
// answering the commands above through ui's and invites' methods (the same
// ones the admin pages use). wait blocks until the socket is closed and
// removed. It fails when another server answers on dataDir's socket
// (control.ErrRunning) or the socket cannot be created.
func startControl(ctx context.Context, dataDir string, ui *webui.UI, invites *invite.Service, log *slog.Logger) (wait func(), err error) {
	s := control.NewServer(log)
	// account parses a bare JID of this server into its username.
	account := func(raw string) (string, error) {
		j, err := jid.Parse(raw)
		if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
			return "", control.Errorf(control.CodeBadRequest, "%q is not a valid account JID (user@domain)", raw)
		}
		if j.Domainpart() != invites.Domain() {
			return "", control.Errorf(control.CodeBadRequest, "this server serves %s, not %s", invites.Domain(), j.Domainpart())
		}
		return j.Localpart(), nil
	}
	// user decodes ctlUserArgs and the username of its JID.
	user := func(raw json.RawMessage) (ctlUserArgs, string, error) {
		var a ctlUserArgs
		if err := decodeArgs(raw, &a); err != nil {
			return a, "", err
		}
		name, err := account(a.JID)
		return a, name, err
	}
	// circle decodes ctlCircleArgs and checks the name.
	circle := func(raw json.RawMessage) (ctlCircleArgs, error) {
		var a ctlCircleArgs
		if err := decodeArgs(raw, &a); err != nil {
			return a, err
		}
		if err := invite.ValidCircleName(a.Name); err != nil {
			return a, control.Errorf(control.CodeBadRequest, "%v", err)
		}
		return a, nil
	}

	s.Handle(ctlAnnounce, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a ctlAnnounceArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		n, err := ui.Announce(ctx, a.Text, ctlBy)
		if errors.Is(err, webui.ErrInvalidAnnouncement) {
			return nil, control.Errorf(control.CodeBadRequest, "the announcement is empty, longer than %d bytes or has control characters", webui.MaxAnnouncementBytes)
		}
		if err != nil {
			return nil, err
		}
		return ctlAnnounced{Sent: n}, nil
	})
	s.Handle(ctlCircleList, func(ctx context.Context, raw json.RawMessage) (any, error) {
		cs, err := invites.Circles(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]ctlCircle, 0, len(cs))
		for _, c := range cs {
			out = append(out, ctlCircle{Name: c.Name, Room: c.Room, Members: c.Members})
		}
		return out, nil
	})
	s.Handle(ctlCircleCreate, func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, err := circle(raw)
		if err != nil {
			return nil, err
		}
		err = invites.CreateCircle(ctx, a.Name, a.Chat)
		if errors.Is(err, invite.ErrNoGroupChat) {
			return nil, control.Errorf(control.CodeConflict, "group chats are not available on this server: create the circle without --chat")
		}
		return nil, ctlError(err, "", "the circle "+a.Name+" exists already")
	})
	s.Handle(ctlCircleDelete, func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, err := circle(raw)
		if err != nil {
			return nil, err
		}
		return nil, ctlError(invites.DeleteCircle(ctx, a.Name), "no such circle "+a.Name, "")
	})
	s.Handle(ctlCircleChat, func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, err := circle(raw)
		if err != nil {
			return nil, err
		}
		err = invites.SetCircleChat(ctx, a.Name, a.Chat)
		if errors.Is(err, invite.ErrNoGroupChat) {
			return nil, control.Errorf(control.CodeConflict, "group chats are not available on this server")
		}
		if err != nil {
			return nil, ctlError(err, "no such circle "+a.Name, "")
		}
		cs, err := invites.Circles(ctx)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if c.Name == a.Name {
				return ctlCircle{Name: c.Name, Room: c.Room, Members: c.Members}, nil
			}
		}
		return nil, control.Errorf(control.CodeNotFound, "no such circle %s", a.Name)
	})
	for _, cmd := range []string{ctlCircleJoin, ctlCircleLeave} {
		s.Handle(cmd, func(ctx context.Context, raw json.RawMessage) (any, error) {
			a, err := circle(raw)
			if err != nil {
				return nil, err
			}
			name, err := account(a.JID)
			if err != nil {
				return nil, err
			}
			if cmd == ctlCircleJoin {
				return nil, ctlError(invites.JoinCircle(ctx, a.Name, name), "no such account "+a.JID, "")
			}
			return nil, ctlError(invites.LeaveCircle(ctx, a.Name, name), "no such circle "+a.Name, "")
		})
	}
	s.Handle(ctlUserRole, func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, name, err := user(raw)
		if err != nil {
			return nil, err
		}
		err = ui.SetRole(ctx, name, a.Role, ctlBy)
		switch {
		case errors.Is(err, webui.ErrInvalidRole):
			return nil, control.Errorf(control.CodeBadRequest, "unknown role %q: want limited, normal or admin", a.Role)
		case errors.Is(err, webui.ErrLastAdmin):
			return nil, control.Errorf(control.CodeConflict, "%s is the last administrator: make another account admin first", a.JID)
		}
		return nil, ctlError(err, "no such account "+a.JID, "")
	})
	s.Handle(ctlUserResetLink, func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, name, err := user(raw)
		if err != nil {
			return nil, err
		}
		link, expires, err := ui.ResetLink(ctx, name, ctlBy)
		if err != nil {
			return nil, ctlError(err, "no such account "+a.JID+" (or it is marked for deletion)", "")
		}
		return ctlResetLink{Link: link, Expires: expires}, nil
	})
	s.Handle(ctlUserDelete, func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, name, err := user(raw)
		if err != nil {
			return nil, err
		}
		on, err := ui.DeleteAccount(ctx, name, ctlBy, a.Now)
		if errors.Is(err, webui.ErrLastAdmin) {
			return nil, control.Errorf(control.CodeConflict, "%s is the last administrator: make another account admin first", a.JID)
		}
		if err != nil {
			return nil, ctlError(err, "no such account "+a.JID, a.JID+" is already marked for deletion (use --now to delete it at once)")
		}
		return ctlDeleted{DeleteOn: on}, nil
	})
	s.Handle(ctlUserUndelete, func(ctx context.Context, raw json.RawMessage) (any, error) {
		a, name, err := user(raw)
		if err != nil {
			return nil, err
		}
		return nil, ctlError(ui.Undelete(ctx, name, ctlBy), a.JID+" is not marked for deletion (or does not exist)", "")
	})
	s.Handle(ctlSettingsShow, func(ctx context.Context, raw json.RawMessage) (any, error) {
		return ui.Settings(ctx)
	})
	s.Handle(ctlSettingsSet, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a ctlSettingArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return nil, settingError(ui.SetText(ctx, textKey(a.Name), a.Text, ctlBy), a.Name)
	})
	s.Handle(ctlStatus, func(ctx context.Context, raw json.RawMessage) (any, error) {
		return ui.Status(ctx)
	})
	s.Handle(ctlSettingsServer, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a ctlServerSettingsArgs
		if err := decodeArgs(raw, &a); err != nil {
			return nil, err
		}
		return nil, serverSettingError(ui.SetServerSettings(ctx, a.Values, ctlBy))
	})
	return s.Listen(ctx, dataDir)
}

// decodeArgs decodes a command's JSON arguments into v, strictly.
func decodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return control.Errorf(control.CodeBadRequest, "bad arguments: %v", err)
	}
	return nil
}

// ctlError gives store.ErrNotFound and store.ErrExists their control
// codes with the messages notFound and exists (when not empty); other
// errors pass unchanged (nil stays nil).
func ctlError(err error, notFound, exists string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound) && notFound != "":
		return control.Errorf(control.CodeNotFound, "%s", notFound)
	case errors.Is(err, store.ErrExists) && exists != "":
		return control.Errorf(control.CodeExists, "%s", exists)
	}
	return err
}

// callServer sends command with args to the server running on dataDir
// through its control socket and decodes the result into result. It
// returns the exit code: 0 on success; 1 with a message on stderr when no
// server runs there or the command failed; 2 when the server refused the
// arguments (bad-request).
func callServer(dataDir string, stderr io.Writer, command string, args, result any) int {
	if err := control.Call(context.Background(), dataDir, command, args, result); err != nil {
		return reportCallError(err, dataDir, stderr)
	}
	return 0
}

// reportCallError prints the error of a control.Call on dataDir to stderr
// and returns callServer's exit code for it.
func reportCallError(err error, dataDir string, stderr io.Writer) int {
	var ce *control.Error
	switch {
	case errors.Is(err, control.ErrNotRunning):
		fmt.Fprintf(stderr, "hearth is not running on %s: start `hearth serve --data %s` first\n", dataDir, dataDir)
	case errors.Is(err, control.ErrUnavailable):
		fmt.Fprintf(stderr, "hearth is running on %s but does not answer on %s (restarting its services?): try again in a moment\n",
			dataDir, control.SocketPath(dataDir))
	case errors.As(err, &ce) && ce.Code == control.CodeBadRequest:
		fmt.Fprintf(stderr, "hearth: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "hearth: %v\n", err)
	}
	return 1
}

// serverSettingError turns a *webui.SettingError into a control error
// (bad-request) naming the setting; others pass unchanged.
func serverSettingError(err error) error {
	var se *webui.SettingError
	if errors.As(err, &se) {
		return control.Errorf(control.CodeBadRequest, "%s: %s", se.Flag, se.Text)
	}
	return err
}
