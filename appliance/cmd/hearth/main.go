// Command hearth is the Hearth appliance: a family XMPP server in one binary.
//
//	hearth serve [flags]              run the server
//	hearth user add|passwd|del|list   manage accounts (works while the server runs)
//	hearth user role|reset-link|undelete   change a role, make a password link, cancel a deletion (running server)
//	hearth settings show|set          welcome message, terms, privacy, limits and retention
//	hearth status [--json]            the system page's figures (running server)
//	hearth invite create|list|revoke  invitations (XEP-0401): link, xmpp: URI, QR code
//	hearth announce TEXT              a message to every account (running server)
//	hearth circle list|create|delete|chat|add|remove   circles and their group chats (running server)
//	hearth netcheck [flags]           can the internet reach this server? (router, NAT, ports)
//	hearth backup FILE                the data directory as .tar.gz, while the server runs
//	hearth export JID [FILE]          one account's data in the XEP-0227 format
//	hearth version                    print the version
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `Hearth: a family XMPP server.

Usage:
  hearth serve [--data DIR] [--domain DOMAIN] [flags]   run the server (see hearth serve --help)
  hearth user add JID [--data DIR]      create an account; password from stdin or generated
  hearth user passwd JID [--data DIR]   set a new password (stdin or generated)
  hearth user del JID [--now] [--data DIR]   delete an account and all its data; a running
                                        server locks it first for the grace period
                                        (--account-deletion-grace) unless --now
  hearth user list [--data DIR]         list accounts
  hearth user role JID limited|normal|admin [--data DIR]   change an account's role *
  hearth user reset-link JID [--no-qr] [--data DIR]   a one-time password link, with QR code *
  hearth user undelete JID [--data DIR]   cancel a pending deletion: the account works again *
  hearth settings show [--json] [--data DIR]   registration policy, welcome message, terms, privacy
  hearth settings set welcome|terms|privacy [TEXT|-] [--data DIR]   set a text of the settings
                                        page (stdin without TEXT or with -; "" removes it)
  hearth settings set NAME VALUE [--data DIR]   a server setting of the settings page: mam-retention,
                                        upload-retention, upload-max-file-size, upload-quota-daily,
                                        upload-storage-cap, max-offline, account-deletion-grace,
                                        contact-KIND (a running server restarts its services to
                                        apply it; otherwise it applies at the next start)
  hearth status [--json] [--data DIR]   version, uptime, memory, disk, shared files, active accounts *
  hearth invite create [--reusable --uses N --expires 7d --role normal --circle NAME --note TEXT]
                                        make an invitation: prints its link, xmpp: URI and QR code
  hearth invite list|revoke [--data DIR]   list invitations, revoke one (by token or link)
  hearth announce [--data DIR] [TEXT]   a message to every account; TEXT or stdin *
  hearth circle list|create NAME [--chat]|delete NAME|chat NAME on|off|add NAME JID|remove NAME JID
                                        [--data DIR] circles (contacts of each other), with a group chat *
  hearth netcheck [--port-mapping auto] [--json]   map the router's ports and tell whether
                                        the internet can reach this server (CGNAT, double NAT...)
  hearth backup FILE.tar.gz [--data DIR] [--no-uploads]   the data directory with a consistent
                                        database snapshot, while the server runs
  hearth export JID [FILE.xml] [--data DIR] [--archive]   one account's data (XEP-0227)
  hearth version                        print the version

* needs the running server (hearth serve on the same --data directory): these
  commands talk to it through its control socket DIR/control.sock.
`

// run dispatches a command line and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		args = []string{"serve"}
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "user":
		return userCmd(args[1:], stdin, stdout, stderr)
	case "invite":
		return inviteCmd(args[1:], stdout, stderr)
	case "announce":
		return announceCmd(args[1:], stdin, stdout, stderr)
	case "settings":
		return settingsCmd(args[1:], stdin, stdout, stderr)
	case "status":
		return statusCmd(args[1:], stdout, stderr)
	case "circle":
		return circleCmd(args[1:], stdout, stderr)
	case "netcheck":
		return netcheck(args[1:], stdout, stderr)
	case "backup":
		return backupCmd(args[1:], stdout, stderr)
	case "export":
		return exportCmd(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "hearth", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "hearth: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
