package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

const circleUsage = `Usage (the server must be running):
  hearth circle list [--data DIR]                 circles, their group chats and members
  hearth circle create NAME [--chat] [--data DIR] a new circle, with --chat a group chat of its members
  hearth circle delete NAME [--data DIR]          delete a circle (and its group chat)
  hearth circle chat NAME on|off [--data DIR]     give the circle a group chat of its members, or close it
  hearth circle add NAME JID [--data DIR]         the account joins the circle (contacts with its members)
  hearth circle remove NAME JID [--data DIR]      the account leaves the circle
`

// circleCmd implements `hearth circle list|create|delete|chat|add|remove`:
// the circles of the admin page /admin/circles, through the running
// server's control socket (the group chats live in its MUC service).
func circleCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, circleUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("circle "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "data", "data directory of the running server")
	chat := fs.Bool("chat", false, "with create: the circle gets a group chat of its members")
	positional, err := parseWithPositional(fs, args[1:])
	if err != nil {
		return 2
	}
	want := map[string]int{"list": 0, "create": 1, "delete": 1, "chat": 2, "add": 2, "remove": 2}
	n, ok := want[sub]
	if !ok {
		fmt.Fprintf(stderr, "hearth: unknown circle command %q\n\n%s", sub, circleUsage)
		return 2
	}
	if len(positional) != n {
		fmt.Fprintf(stderr, "hearth circle %s: wrong number of arguments\n\n%s", sub, circleUsage)
		return 2
	}
	if *chat && sub != "create" {
		fmt.Fprintln(stderr, "hearth circle: --chat goes with create")
		return 2
	}
	switch sub {
	case "list":
		var cs []ctlCircle
		if code := callServer(*data, stderr, ctlCircleList, nil, &cs); code != 0 {
			return code
		}
		if len(cs) == 0 {
			fmt.Fprintln(stdout, "no circles")
		}
		for _, c := range cs {
			room := "no group chat"
			if c.Room != "" {
				room = "group chat " + c.Room
			}
			fmt.Fprintf(stdout, "%s\t%s\tmembers [%s]\n", c.Name, room, strings.Join(c.Members, ","))
		}
		return 0
	case "create":
		if code := callServer(*data, stderr, ctlCircleCreate, ctlCircleArgs{Name: positional[0], Chat: *chat}, nil); code != 0 {
			return code
		}
		if *chat {
			fmt.Fprintf(stdout, "created circle %s with a group chat\n", positional[0])
		} else {
			fmt.Fprintf(stdout, "created circle %s\n", positional[0])
		}
	case "delete":
		if code := callServer(*data, stderr, ctlCircleDelete, ctlCircleArgs{Name: positional[0]}, nil); code != 0 {
			return code
		}
		fmt.Fprintf(stdout, "deleted circle %s\n", positional[0])
	case "chat":
		on := positional[1] == "on"
		if !on && positional[1] != "off" {
			fmt.Fprintf(stderr, "hearth circle chat: %q is not on or off\n\n%s", positional[1], circleUsage)
			return 2
		}
		var c ctlCircle
		if code := callServer(*data, stderr, ctlCircleChat, ctlCircleArgs{Name: positional[0], Chat: on}, &c); code != 0 {
			return code
		}
		if c.Room != "" {
			fmt.Fprintf(stdout, "circle %s: group chat %s\n", c.Name, c.Room)
		} else {
			fmt.Fprintf(stdout, "circle %s: no group chat\n", c.Name)
		}
	case "add":
		if code := callServer(*data, stderr, ctlCircleJoin, ctlCircleArgs{Name: positional[0], JID: positional[1]}, nil); code != 0 {
			return code
		}
		fmt.Fprintf(stdout, "%s joined %s\n", positional[1], positional[0])
	case "remove":
		if code := callServer(*data, stderr, ctlCircleLeave, ctlCircleArgs{Name: positional[0], JID: positional[1]}, nil); code != 0 {
			return code
		}
		fmt.Fprintf(stdout, "%s left %s\n", positional[1], positional[0])
	}
	return 0
}
