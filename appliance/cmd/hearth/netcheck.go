package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/certs"
	"github.com/hearthxmpp/hearth/ddns/portmap"
	"github.com/hearthxmpp/hearth/ddns/reach"
)

// defaultSTUNServers answer STUN Binding requests (RFC 8489) on 3478.
const defaultSTUNServers = "stun.nextcloud.com:3478,stun.l.google.com:19302"

// homePorts are the ports a home Hearth needs open from the internet, with
// what each is for, from the serve flags (0 = disabled, left out).
func homePorts(c2s, c2sTLS, s2s, https, turn int) []reach.Port {
	var out []reach.Port
	add := func(proto string, port int, purpose string) {
		if port > 0 && port < 65536 {
			out = append(out, reach.Port{Protocol: proto, Number: uint16(port), Purpose: purpose})
		}
	}
	add("tcp", c2s, "phones and apps (XMPP)")
	add("tcp", c2sTLS, "phones and apps (XMPP over TLS)")
	add("tcp", s2s, "other servers (federation)")
	add("tcp", https, "web client, file sharing, invites")
	add("udp", turn, "calls (STUN/TURN)")
	add("tcp", turn, "calls (TURN over TCP)")
	return out
}

// publicPorts are homePorts for the serve flags, plus the plain HTTP
// port when ACME HTTP-01 needs it reachable (Let's Encrypt connects to
// port 80).
func (c *serveConfig) publicPorts() []reach.Port {
	ports := homePorts(c.c2sPort, c.c2sTLSPort, c.s2sPort, c.httpsPort, c.turnPort)
	if c.acme.acme && c.acme.challenge == certs.ChallengeHTTP01 && c.httpPort > 0 && c.httpPort < 65536 {
		ports = append(ports, reach.Port{Protocol: "tcp", Number: uint16(c.httpPort), Purpose: "certificates (Let's Encrypt HTTP-01)"})
	}
	return ports
}

// portOrOff is a port for webui.Config's SRV ports: 0 (disabled) becomes
// -1, which leaves the record out.
func portOrOff(p int) int {
	if p == 0 {
		return -1
	}
	return p
}

// mappings turns ports into router port mappings (same port outside).
func mappings(ports []reach.Port) []portmap.Mapping {
	out := make([]portmap.Mapping, len(ports))
	for i, p := range ports {
		out[i] = portmap.Mapping{Protocol: p.Protocol, InternalPort: p.Number, Description: "Hearth " + p.Purpose}
	}
	return out
}

// newPortMapper returns the manager that keeps the public ports mapped on
// the home router (hearth serve --port-mapping), or nil when that is off.
func newPortMapper(cfg *serveConfig, log *slog.Logger) *portmap.Manager {
	if cfg.portMapping == "off" {
		return nil
	}
	ports := cfg.publicPorts()
	return portmap.NewManager(func(ctx context.Context) (portmap.Router, error) {
		return portmap.Discover(ctx, cfg.portMapping)
	}, mappings(ports), 0, log)
}

// startPortMapping runs mgr until ctx ends; the returned func waits until
// the mappings are removed.
func startPortMapping(ctx context.Context, mgr *portmap.Manager) (wait func()) {
	done := mgr.Run(ctx)
	return func() { <-done }
}

// netcheck prints the reachability verdict: hearth netcheck [flags].
func netcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("netcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	method := fs.String("port-mapping", "auto", "ask the router to forward ports: auto, upnp, natpmp or off")
	stunList := fs.String("stun-servers", defaultSTUNServers, "comma-separated STUN servers (host:port) that tell the public address")
	keep := fs.Bool("keep", false, "leave the port mappings on the router afterwards (hearth serve --port-mapping renews its own)")
	asJSON := fs.Bool("json", false, "print the verdict as JSON")
	c2s := fs.Int("c2s-port", 5222, "client port")
	c2sTLS := fs.Int("c2s-tls-port", 5223, "direct TLS client port")
	s2s := fs.Int("s2s-port", 5269, "server-to-server port")
	https := fs.Int("https-port", 443, "HTTPS port")
	turn := fs.Int("turn-port", 3478, "STUN/TURN port")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ports := homePorts(*c2s, *c2sTLS, *s2s, *https, *turn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var mgr *portmap.Manager
	if *method != "off" {
		mgr = portmap.NewManager(func(ctx context.Context) (portmap.Router, error) {
			return portmap.Discover(ctx, *method)
		}, mappings(ports), 0, log)
		mgr.Refresh(ctx)
		if !*keep {
			defer mgr.Remove()
		}
	}
	v := reach.Check(ctx, reach.CheckConfig{Ports: ports, STUNServers: splitList(*stunList), Router: mgr})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			fmt.Fprintln(stderr, "hearth:", err)
			return 1
		}
		return 0
	}
	printVerdict(stdout, v)
	return 0
}

// printVerdict writes the verdict for a person.
func printVerdict(w io.Writer, v reach.Verdict) {
	fmt.Fprintf(w, "%s\n\n%s\n", strings.ToUpper(string(v.Kind)), v.Summary)
	if len(v.Steps) > 0 {
		fmt.Fprintln(w, "\nWhat to do:")
		for i, s := range v.Steps {
			fmt.Fprintf(w, "  %d. %s\n", i+1, s)
		}
	}
	fmt.Fprintln(w, "\nPorts:")
	for _, p := range v.Ports {
		state := "not mapped"
		if p.Mapped {
			state = "mapped by the router"
		} else if p.MapErr != "" {
			state = "refused by the router: " + p.MapErr
		}
		if p.Hairpin != "" {
			state += "; from home to the public address: " + p.Hairpin
		}
		fmt.Fprintf(w, "  %5d/%s  %-34s %s\n", p.Port.Number, p.Port.Protocol, p.Port.Purpose, state)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
