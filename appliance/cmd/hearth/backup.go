package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hearthxmpp/hearth/appliance/backup"
	"github.com/hearthxmpp/hearth/appliance/pie"
	"github.com/hearthxmpp/hearth/appliance/store"
	"mellium.im/xmpp/jid"
)

// parseWithPositional parses flags that may come before or after the
// positional arguments.
func parseWithPositional(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for rest := args; len(rest) > 0; {
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
		rest = fs.Args()
		if len(rest) > 0 {
			positional = append(positional, rest[0])
			rest = rest[1:]
		}
	}
	return positional, nil
}

// writeOutput writes through write to path ("-": stdout), via a temporary
// file renamed into place once complete, mode 0600 (backups hold secrets).
func writeOutput(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "-" {
		return write(stdout)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".hearth-out-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// backupCmd implements `hearth backup FILE [--data DIR] [--no-uploads]`:
// the data directory as a .tar.gz with a consistent database snapshot,
// while the server runs (package backup).
func backupCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	noUploads := fs.Bool("no-uploads", false, "leave the uploaded files out")
	pos, err := parseWithPositional(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: hearth backup FILE.tar.gz [--data DIR] [--no-uploads]   (FILE - writes to stdout)")
		return 2
	}
	ctx := context.Background()
	st, ok := openStore(*data, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	err = writeOutput(pos[0], stdout, func(w io.Writer) error {
		return backup.Write(ctx, w, st, *data, backup.Options{Uploads: !*noUploads})
	})
	if err != nil {
		fmt.Fprintf(stderr, "hearth: backup: %v\n", err)
		return 1
	}
	if pos[0] != "-" {
		fmt.Fprintf(stdout, "backup written to %s\n", pos[0])
	}
	return 0
}

// exportCmd implements `hearth export JID [FILE] [--data DIR] [--archive]`:
// one account's data in the XEP-0227 format (package pie).
func exportCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory")
	archive := fs.Bool("archive", false, "include the message archive (XEP-0313)")
	pos, err := parseWithPositional(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) < 1 || len(pos) > 2 {
		fmt.Fprintln(stderr, "usage: hearth export JID [FILE.xml] [--data DIR] [--archive]   (no FILE: stdout)")
		return 2
	}
	j, err := jid.Parse(pos[0])
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		fmt.Fprintf(stderr, "hearth: %q is not a valid account JID (user@domain)\n", pos[0])
		return 2
	}
	out := "-"
	if len(pos) == 2 {
		out = pos[1]
	}
	ctx := context.Background()
	st, ok := openStore(*data, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	if err := checkDomain(ctx, st, j.Domainpart()); err != nil {
		fmt.Fprintf(stderr, "hearth: %v\n", err)
		return 1
	}
	err = writeOutput(out, stdout, func(w io.Writer) error {
		return pie.ExportUser(ctx, st, j.Domainpart(), j.Localpart(), w, pie.Options{Archive: *archive})
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		fmt.Fprintf(stderr, "hearth: no such account %s\n", j.Bare())
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "hearth: export: %v\n", err)
		return 1
	}
	return 0
}
