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
	"github.com/hearthxmpp/hearth/appliance/store"
	"mellium.im/xmpp/jid"
)

// userCmd implements `hearth user add|passwd|del|list`. It opens the same
// SQLite database as a running server (WAL mode allows both at once).
func userCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	// Accept the JID before or after the flags.
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
		if err := st.DeleteAccount(ctx, user); err != nil {
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
