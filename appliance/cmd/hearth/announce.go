package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hearthxmpp/hearth/webui"
)

// announceCmd implements `hearth announce [--data DIR] TEXT`: a message
// from the server's domain to every account (like the admin page
// /admin/announce), delivered at once to the devices online and kept
// offline for the others. Without TEXT it reads the text from stdin. It
// needs the running server (control socket).
func announceCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("announce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory of the running server")
	positional, err := parseWithPositional(fs, args)
	if err != nil {
		return 2
	}
	text := strings.Join(positional, " ")
	if len(positional) == 0 {
		if f, ok := stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				fmt.Fprintln(stderr, "Type the announcement, then Ctrl-D:")
			}
		}
		b, err := io.ReadAll(io.LimitReader(stdin, webui.MaxAnnouncementBytes+1))
		if err != nil {
			fmt.Fprintf(stderr, "hearth: %v\n", err)
			return 1
		}
		text = string(b)
	}
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		fmt.Fprintln(stderr, "hearth announce: no text (give it as arguments or on stdin)")
		return 2
	case len(text) > webui.MaxAnnouncementBytes:
		fmt.Fprintf(stderr, "hearth announce: the text is longer than %d bytes\n", webui.MaxAnnouncementBytes)
		return 2
	}
	var res ctlAnnounced
	if code := callServer(*data, stderr, ctlAnnounce, ctlAnnounceArgs{Text: text}, &res); code != 0 {
		return code
	}
	accounts := "accounts"
	if res.Sent == 1 {
		accounts = "account"
	}
	fmt.Fprintf(stdout, "announcement sent to %d %s\n", res.Sent, accounts)
	return 0
}
