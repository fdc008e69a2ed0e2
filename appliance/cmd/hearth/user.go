package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hearthxmpp/hearth/appliance/account"
	"github.com/hearthxmpp/hearth/appliance/backup"
	"github.com/hearthxmpp/hearth/appliance/control"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/upload"
	"github.com/skip2/go-qrcode"
	"mellium.im/xmpp/jid"
)

// userCmd implements `hearth user add|passwd|del|undelete|list|role|reset-link`.
// add, passwd and list open the same SQLite database as a running server
// (WAL mode allows both at once). role, reset-link and undelete (cancel a
// pending deletion) go through the running server's control socket, like
// del when the server runs (so it
// ends the account's live sessions and follows the grace period of the
// admin page); without a server, del deletes at once in the database.
func userCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	now := fs.Bool("now", false, "with del: delete at once, without the grace period of a running server")
	noQR := fs.Bool("no-qr", false, "with reset-link: do not print the QR code")
	// Accept the JID before or after the flags.
	positional, err := parseWithPositional(fs, args[1:])
	if err != nil {
		return 2
	}
	ctx := context.Background()
	switch {
	case sub == "role" && len(positional) == 2:
		if code := callServer(*data, stderr, ctlUserRole, ctlUserArgs{JID: positional[0], Role: positional[1]}, nil); code != 0 {
			return code
		}
		fmt.Fprintf(stdout, "%s is now %s\n", positional[0], positional[1])
		return 0
	case sub == "role":
		fmt.Fprintln(stderr, "hearth user role: need a JID and a role (limited, normal or admin)")
		return 2
	case sub == "reset-link" && len(positional) == 1:
		var res ctlResetLink
		if code := callServer(*data, stderr, ctlUserResetLink, ctlUserArgs{JID: positional[0]}, &res); code != 0 {
			return code
		}
		fmt.Fprintf(stdout, "Password link for %s, valid once until %s:\n  %s\n", positional[0], res.Expires.Format("2006-01-02 15:04 MST"), res.Link)
		if !*noQR {
			return printQR(stdout, stderr, res.Link, "open the link")
		}
		return 0
	case sub == "undelete" && len(positional) == 1:
		if code := callServer(*data, stderr, ctlUserUndelete, ctlUserArgs{JID: positional[0]}, nil); code != 0 {
			return code
		}
		fmt.Fprintf(stdout, "%s is kept: the deletion is cancelled and its password works again\n", positional[0])
		return 0
	case sub == "del" && len(positional) == 1:
		// Through the running server when there is one.
		var res ctlDeleted
		err := control.Call(ctx, *data, ctlUserDelete, ctlUserArgs{JID: positional[0], Now: *now}, &res)
		switch {
		case err == nil && res.DeleteOn.IsZero():
			fmt.Fprintf(stdout, "deleted %s\n", positional[0])
			return 0
		case err == nil:
			fmt.Fprintf(stdout, "%s is locked and will be deleted on %s (cancel with hearth user undelete or on the admin page /admin/users; --now deletes at once)\n",
				positional[0], res.DeleteOn.Format("2006-01-02 15:04 MST"))
			return 0
		case !errors.Is(err, control.ErrNotRunning):
			return reportCallError(err, *data, stderr)
		}
		// No server: hold its lock while deleting, so that none starts
		// meanwhile with this account in its caches.
		release, err := control.Lock(*data)
		if err != nil {
			return reportCallError(fmt.Errorf("%w: %v", control.ErrUnavailable, err), *data, stderr)
		}
		defer release()
	}
	st, ok := openStore(*data, stderr)
	if !ok {
		return 1
	}
	defer st.Close()

	if sub == "list" {
		accts, err := st.Accounts(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "hearth: %v\n", err)
			return 1
		}
		for _, a := range accts {
			last := "never"
			if !a.LastLogout.IsZero() {
				last = a.LastLogout.Format("2006-01-02 15:04")
			}
			fmt.Fprintf(stdout, "%s\tcreated %s\tlast seen %s\n", a.Username, a.Created.Format("2006-01-02"), last)
		}
		return 0
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "hearth user %s: need exactly one JID (like alice@example.org)\n", sub)
		return 2
	}
	j, err := jid.Parse(positional[0])
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		fmt.Fprintf(stderr, "hearth: %q is not a valid account JID (user@domain)\n", positional[0])
		return 2
	}
	user := j.Localpart()
	if err := checkDomain(ctx, st, j.Domainpart()); err != nil {
		fmt.Fprintf(stderr, "hearth: %v\n", err)
		return 1
	}
	switch sub {
	case "add", "passwd":
		pw, generated, err := readPassword(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "hearth: %v\n", err)
			return 1
		}
		if sub == "add" {
			err = account.Create(ctx, st, user, pw)
		} else {
			err = account.SetPassword(ctx, st, user, pw)
		}
		switch {
		case errors.Is(err, store.ErrExists):
			fmt.Fprintf(stderr, "hearth: %s already exists\n", j.Bare())
			return 1
		case errors.Is(err, store.ErrNotFound):
			fmt.Fprintf(stderr, "hearth: no such account %s\n", j.Bare())
			return 1
		case err != nil:
			fmt.Fprintf(stderr, "hearth: %v\n", err)
			return 1
		}
		if generated {
			fmt.Fprintf(stdout, "%s password: %s\n", j.Bare(), pw)
		} else if sub == "add" {
			fmt.Fprintf(stdout, "created %s\n", j.Bare())
		} else {
			fmt.Fprintf(stdout, "password changed for %s\n", j.Bare())
		}
		return 0
	case "del":
		// No server runs: delete at once, uploaded files first (as the
		// server does), then the account with all its data; never the last
		// administrator (the setup wizard would open again on the LAN).
		if role, err := st.Role(ctx, user); err == nil && role == store.RoleAdmin {
			if n, err := st.CountAdmins(ctx); err != nil || n <= 1 {
				fmt.Fprintf(stderr, "hearth: %s is the last administrator: give another account the admin role first (hearth user role JID admin)\n", j.Bare())
				return 1
			}
		}
		_, _, err := upload.DeleteUserFiles(ctx, st, filepath.Join(*data, "uploads"), user)
		if err == nil {
			err = st.DeleteAccount(ctx, user)
		}
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				fmt.Fprintf(stderr, "hearth: no such account %s\n", j.Bare())
			} else {
				fmt.Fprintf(stderr, "hearth: %v\n", err)
			}
			return 1
		}
		fmt.Fprintf(stdout, "deleted %s\n", j.Bare())
		return 0
	default:
		fmt.Fprintf(stderr, "hearth: unknown user command %q\n\n%s", sub, usage)
		return 2
	}
}

// readPassword reads the first line of stdin; when stdin is a terminal or the
// line is empty it generates a password instead (generated=true).
func readPassword(stdin io.Reader) (pw string, generated bool, err error) {
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return generatePassword(), true, nil
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", false, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return generatePassword(), true, nil
	}
	return line, false, nil
}

// generatePassword returns 20 characters from an unambiguous alphabet
// (~110 bits of entropy).
func generatePassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRSTUVWXYZ23456789"
	return randomFrom(alphabet, 20)
}

func randomFrom(alphabet string, n int) string {
	b := make([]byte, n)
	buf := make([]byte, 1)
	for i := 0; i < n; {
		rand.Read(buf)
		if int(buf[0]) >= 256-256%len(alphabet) {
			continue // rejection sampling keeps the distribution uniform
		}
		b[i] = alphabet[int(buf[0])%len(alphabet)]
		i++
	}
	return string(b)
}

// openStore opens the database of the data directory dir for a CLI command
// (it works while the server runs: SQLite WAL); on failure it prints the
// error to stderr and reports false.
func openStore(dir string, stderr io.Writer) (*store.Store, bool) {
	st, err := store.Open(filepath.Join(dir, backup.DBName))
	if err != nil {
		fmt.Fprintf(stderr, "hearth: %v\n", err)
		return nil, false
	}
	return st, true
}

// printQR prints link as a QR code of Unicode half blocks for a phone
// camera, under a line saying it is scanned to do what (like "open the
// invitation"). It returns the exit code: 1 (with the error on stderr) if
// the link is too long for a QR code.
func printQR(stdout, stderr io.Writer, link, what string) int {
	q, err := qrcode.New(link, qrcode.Medium)
	if err != nil {
		fmt.Fprintf(stderr, "hearth: QR code: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nScan with a phone camera to %s:\n\n%s", what, q.ToSmallString(false))
	return 0
}
