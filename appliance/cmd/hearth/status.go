package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/hearthxmpp/hearth/webui"
)

// statusCmd implements `hearth status [--data DIR] [--json]`: the figures
// of the admin system page (/admin/system, webui.UI.Status): version,
// uptime, memory, disk and database, shared files, accounts, connected
// devices and active accounts. It needs the running server (control
// socket). --json prints webui.SystemStatus as JSON (sizes in bytes).
func statusCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory of the running server")
	asJSON := fs.Bool("json", false, "print the figures as JSON (sizes in bytes)")
	positional, err := parseWithPositional(fs, args)
	if err != nil {
		return 2
	}
	if len(positional) != 0 {
		fmt.Fprintf(stderr, "hearth status: unexpected argument %q\n", positional[0])
		return 2
	}
	var st webui.SystemStatus
	if code := callServer(*data, stderr, ctlStatus, nil, &st); code != 0 {
		return code
	}
	if *asJSON {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	for _, f := range st.Facts() {
		fmt.Fprintf(stdout, "%s: %s\n", f.Label, f.Value)
	}
	fmt.Fprintln(stdout, "Active accounts:")
	for _, f := range st.ActiveFacts() {
		fmt.Fprintf(stdout, "  %s: %s\n", f.Label, f.Value)
	}
	return 0
}
