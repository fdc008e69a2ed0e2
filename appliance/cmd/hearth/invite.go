package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/invite"
	"github.com/hearthxmpp/hearth/appliance/store"
)

const inviteUsage = `Usage:
  hearth invite create [--data DIR] [--reusable [--uses N]] [--expires 7d] [--role normal]
                       [--circle NAME]... [--note TEXT] [--inviter USER] [--url BASE] [--no-qr]
  hearth invite list [--data DIR] [--url BASE]
  hearth invite revoke TOKEN|LINK [--data DIR]
  hearth invite registration [open|closed] [--data DIR]   registration without invitation (closed by default)
`

// inviteCmd implements `hearth invite create|list|revoke` (XEP-0401
// invitations). Like `hearth user` it works on the data directory of a
// running server.
func inviteCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, inviteUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("invite "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	base := fs.String("url", "", "base of the invitation links (default https://DOMAIN)")
	reusable := fs.Bool("reusable", false, "a group invitation, usable by several people")
	uses := fs.Int("uses", 0, "with --reusable: how many people may use it (0: no limit until it expires)")
	expires := fs.String("expires", "7d", "validity: 1h to 4w (like 12h, 3d, 2w)")
	role := fs.String("role", store.RoleNormal, "role of the new accounts: limited, normal or admin")
	note := fs.String("note", "", "a note for yourself (who it is for)")
	inviter := fs.String("inviter", "", "account (localpart) the new people get in their contacts")
	noQR := fs.Bool("no-qr", false, "do not print the QR code")
	var circles []string
	fs.Func("circle", "circle the new accounts join (repeatable)", func(v string) error {
		circles = append(circles, v)
		return nil
	})
	positional, err := parseWithPositional(fs, args[1:])
	if err != nil {
		return 2
	}
	ctx := context.Background()
	st, ok := openStore(*data, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	domain, err := st.Setting(ctx, store.SettingDomain)
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(stderr, "hearth: %s has no domain yet: start the server once (hearth serve --data %s --domain ...)\n", *data, *data)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "hearth: %v\n", err)
		return 1
	}
	if *base == "" {
		*base = "https://" + domain
	}
	svc := invite.New(invite.Config{Store: st, Domain: domain, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	switch sub {
	case "create":
		if len(positional) != 0 {
			fmt.Fprintf(stderr, "hearth invite create: unexpected argument %q\n", positional[0])
			return 2
		}
		d, err := invite.ParseExpiry(*expires)
		if err != nil {
			fmt.Fprintf(stderr, "hearth: %v\n", err)
			return 2
		}
		inv, err := svc.Create(ctx, invite.Options{
			Reusable: *reusable, MaxUses: *uses, Expires: d, Role: *role,
			Circles: circles, Note: *note, Inviter: *inviter,
		})
		if errors.Is(err, invite.ErrInvalidOptions) {
			fmt.Fprintf(stderr, "hearth: %v\n", err)
			return 2
		}
		if err != nil {
			fmt.Fprintf(stderr, "hearth: %v\n", err)
			return 1
		}
		link := invite.Link(*base, inv.Token)
		fmt.Fprintf(stdout, "Invitation to %s: %s, role %s, valid until %s\n", domain, describeUses(inv), inv.Role, inv.Expires.Format("2006-01-02 15:04 MST"))
		fmt.Fprintf(stdout, "  Link: %s\n", link)
		fmt.Fprintf(stdout, "  XMPP: %s\n", invite.URI(domain, inv.Token))
		if !*noQR {
			return printQR(stdout, stderr, link, "open the invitation")
		}
		return 0
	case "list":
		invs, err := svc.List(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "hearth: %v\n", err)
			return 1
		}
		now := time.Now()
		for _, inv := range invs {
			status := "valid"
			if err := invite.Status(inv, now); err != nil {
				status = strings.TrimPrefix(err.Error(), "invite: invitation ")
			}
			var who []string
			for _, u := range inv.UsedBy {
				who = append(who, u.Username)
			}
			fmt.Fprintf(stdout, "%s\t%s\t%s\trole %s\tuntil %s\tused by [%s]\tcircles [%s]\t%s\n",
				invite.Link(*base, inv.Token), status, describeUses(inv), inv.Role,
				inv.Expires.Format("2006-01-02 15:04"), strings.Join(who, ","), strings.Join(inv.Circles, ","), inv.Note)
		}
		return 0
	case "registration":
		switch {
		case len(positional) == 0:
		case len(positional) == 1 && (positional[0] == "open" || positional[0] == "closed"):
			if err := svc.SetOpen(ctx, positional[0] == "open"); err != nil {
				fmt.Fprintf(stderr, "hearth: %v\n", err)
				return 1
			}
		default:
			fmt.Fprintln(stderr, "hearth invite registration: want open or closed")
			return 2
		}
		if svc.Open(ctx) {
			fmt.Fprintln(stdout, "registration is open: anyone can create an account in-band")
		} else {
			fmt.Fprintln(stdout, "registration is closed: invitations only")
		}
		return 0
	case "revoke":
		if len(positional) != 1 {
			fmt.Fprintln(stderr, "hearth invite revoke: need exactly one token or link")
			return 2
		}
		token := positional[0]
		if i := strings.LastIndex(token, "/invite/"); i >= 0 {
			token = token[i+len("/invite/"):]
		}
		if err := svc.Revoke(ctx, token); err != nil {
			if errors.Is(err, invite.ErrUnknown) {
				fmt.Fprintln(stderr, "hearth: no such invitation")
			} else {
				fmt.Fprintf(stderr, "hearth: %v\n", err)
			}
			return 1
		}
		fmt.Fprintln(stdout, "revoked")
		return 0
	default:
		fmt.Fprintf(stderr, "hearth: unknown invite command %q\n\n%s", sub, inviteUsage)
		return 2
	}
}

// describeUses says how an invitation may be used ("single use",
// "group, 2 of 10 used", "group, 3 used").
func describeUses(inv store.Invite) string {
	switch {
	case inv.MaxUses == 1:
		if inv.Uses > 0 {
			return "single use, used"
		}
		return "single use"
	case inv.MaxUses == 0:
		return fmt.Sprintf("group, %d used", inv.Uses)
	default:
		return fmt.Sprintf("group, %d of %d used", inv.Uses, inv.MaxUses)
	}
}
