package interop_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// The simulated home of scripts/netns/home.sh: Hearth's host in a LAN
// namespace behind a router namespace running nftables NAT and miniupnpd,
// an "internet" namespace with a client and a STUN server (coturn).
const (
	homePrefix = "hx-"
	homeLAN    = "10.77.1.2"
	homeWAN    = "20.77.0.2" // the public address the internet sees
	homeSTUN   = "20.77.0.1:3478"
)

func requireHome(t *testing.T) {
	t.Helper()
	requireHearth(t)
	if os.Geteuid() != 0 {
		unavailable(t, "network namespaces need root")
	}
	for _, tool := range []string{"/usr/sbin/ip", "/usr/sbin/nft", "/usr/sbin/miniupnpd", "/usr/bin/turnserver"} {
		if _, err := os.Stat(tool); err != nil {
			unavailable(t, "%s is missing (Debian packages iproute2, nftables, miniupnpd-nftables, coturn): %v", tool, err)
		}
	}
}

// homeUp builds the home for scenario and tears it down when the test ends.
func homeUp(t *testing.T, scenario string) string {
	t.Helper()
	work := t.TempDir()
	script := filepath.Join(repoRoot, "scripts", "netns", "home.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, script, "up", homePrefix, scenario, work).CombinedOutput(); err != nil {
		t.Fatalf("home.sh up %s: %v\n%s", scenario, err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"miniupnpd.log", "stun.log"} {
				b, _ := os.ReadFile(filepath.Join(work, f))
				t.Logf("%s:\n%s", f, b)
			}
		}
		exec.Command(script, "down", homePrefix, work).Run()
	})
	return work
}

// inNS runs a command inside one of the home's namespaces.
func inNS(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", homePrefix + ns, name}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// routerForwards lists the DNAT rules miniupnpd installed on the router.
func routerForwards(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := inNS(ctx, "router", "nft", "list", "chain", "inet", "nat", "prerouting_miniupnpd").CombinedOutput()
	if err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	return string(out)
}

// TestHomeReachabilityVerdicts runs `hearth netcheck` in the LAN namespace
// of each simulated home and checks the verdict.
func TestHomeReachabilityVerdicts(t *testing.T) {
	requireHome(t)
	for _, c := range []struct {
		scenario, method, want string
	}{
		{"upnp", "upnp", "mapped"},
		{"natpmp", "natpmp", "mapped"},
		{"none", "auto", "manual"},
		{"cgnat", "auto", "cgnat"},
	} {
		t.Run(c.scenario, func(t *testing.T) {
			homeUp(t, c.scenario)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out, err := inNS(ctx, "lan", hearthBin, "netcheck", "--json", "--port-mapping", c.method,
				"--stun-servers", homeSTUN, "--https-port", "5281").Output()
			if err != nil {
				t.Fatalf("netcheck: %v\n%s", err, out)
			}
			var v struct {
				Kind, Summary     string
				Public, RouterWAN string
				Steps             []string
				Ports             []struct {
					Mapped bool
					Port   struct{ Number int }
				}
			}
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatalf("netcheck output: %v\n%s", err, out)
			}
			t.Logf("%s: %s (%s) steps %q", c.scenario, v.Kind, v.Summary, v.Steps)
			if v.Kind != c.want {
				t.Fatalf("verdict %q, want %q:\n%s", v.Kind, c.want, out)
			}
			if v.Public != homeWAN {
				t.Errorf("public address %q, want %s (STUN)", v.Public, homeWAN)
			}
			mapped := 0
			for _, p := range v.Ports {
				if p.Mapped {
					mapped++
				}
			}
			switch c.want {
			case "mapped":
				if mapped != len(v.Ports) || len(v.Ports) == 0 {
					t.Errorf("%d of %d ports mapped", mapped, len(v.Ports))
				}
			case "manual":
				if !strings.Contains(strings.Join(v.Steps, " "), homeLAN) {
					t.Errorf("manual steps do not name the LAN address: %q", v.Steps)
				}
			}
			// Without --keep, netcheck leaves the router's table as it was.
			if c.scenario != "none" && strings.Contains(routerForwards(t), "dnat") {
				t.Errorf("netcheck left mappings behind:\n%s", routerForwards(t))
			}
		})
	}
}

// TestHomeLoginThroughRouter runs `hearth serve --port-mapping` in the LAN:
// it maps its ports on the router, a client on the internet side logs in
// through the public address, and SIGTERM removes the mappings.
func TestHomeLoginThroughRouter(t *testing.T) {
	requireHome(t)
	requireSlixmpp(t)
	for _, method := range []string{"upnp", "natpmp"} {
		t.Run(method, func(t *testing.T) {
			homeUp(t, method)
			s := &server{workDir: t.TempDir(), data: "data"}
			jid, pw := s.addUser(t, "alice")
			logPath := filepath.Join(t.TempDir(), "hearth.log")
			logf, err := os.Create(logPath)
			if err != nil {
				t.Fatal(err)
			}
			defer logf.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := inNS(ctx, "lan", hearthBin, "serve", "--data", s.dataDir(), "--domain", domain,
				"--listen", homeLAN, "--port-mapping", method, "--http-port", "0", "--https-port", "0",
				"--mdns-host", "hearth")
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				cmd.Process.Kill()
				if t.Failed() {
					b, _ := os.ReadFile(logPath)
					t.Logf("hearth output:\n%s", b)
				}
			}()
			deadline := time.Now().Add(45 * time.Second)
			for !strings.Contains(routerForwards(t), "dport 5222") {
				if time.Now().After(deadline) {
					t.Fatalf("hearth did not map 5222 on the router:\n%s", routerForwards(t))
				}
				time.Sleep(200 * time.Millisecond)
			}
			lctx, lcancel := context.WithTimeout(ctx, scriptTimeout)
			defer lcancel()
			out, err := inNS(lctx, "inet", python, scriptPath("login.py"), "--host", homeWAN, "--port", "5222",
				"--jid", jid, "--password", pw, "--ca", filepath.Join(s.dataDir(), "tls", "cert.pem")).CombinedOutput()
			t.Logf("login.py from the internet side:\n%s", out)
			if err != nil || !strings.Contains(string(out), "PASS") {
				t.Fatalf("login through %s:5222 failed: %v", homeWAN, err)
			}
			// The router (on the LAN) resolves hearth.local by mDNS.
			if a := mdnsLookup(t, "router", "hearth.local."); a != homeLAN {
				t.Errorf("hearth.local resolves to %q over mDNS, want %s", a, homeLAN)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(stopTimeout):
				t.Fatal("hearth did not stop after SIGTERM")
			}
			if fw := routerForwards(t); strings.Contains(fw, "dnat") {
				t.Errorf("mappings left on the router after shutdown:\n%s", fw)
			}
		})
	}
}

// mdnsLookup sends a one-shot multicast DNS query (RFC 6762 §5.1: from a
// port other than 5353, so the answer comes back by unicast) for name's A
// record from a socket made inside namespace ns, and returns the first
// address answered, or "" after 5 s.
func mdnsLookup(t *testing.T, ns, name string) string {
	t.Helper()
	type result struct {
		conn *net.UDPConn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// This goroutine's thread enters ns and is never unlocked, so Go
		// retires the thread instead of reusing it elsewhere.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + homePrefix + ns)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{})
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("socket in %s: %v", ns, r.err)
	}
	defer r.conn.Close()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	q.RecursionDesired = false
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 9000)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := r.conn.WriteToUDP(b, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}); err != nil {
			t.Fatalf("mDNS query: %v", err)
		}
		r.conn.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			continue // retransmit (RFC 6762 §5.2 would wait longer)
		}
		var m dns.Msg
		if m.Unpack(buf[:n]) != nil {
			continue
		}
		for _, rr := range m.Answer {
			if a, ok := rr.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, name) {
				return a.A.String()
			}
		}
	}
	return ""
}
