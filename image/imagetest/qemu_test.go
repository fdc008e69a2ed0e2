// Package imagetest boots Hearth's gokrazy SD-card image in QEMU and checks it
// end to end through forwarded loopback ports: the web listener, XMPP logins
// and messages, an over-the-air update with `gok update`, and that the data on
// /perm survives it. scripts/image-test.sh does the building and booting.
package imagetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest"
)

const domain = "hearth.local"

// vm is one booted image: its forwarded ports and how to run the script.
type vm struct {
	t                              *testing.T
	root, out                      string
	https, http, c2s, c2sTLS, gokr string // 127.0.0.1:port
	env                            []string
}

// TestImageQEMU builds image/out/hearth-qemu.img (the Raspberry Pi instance on
// gokrazy's kernel.arm64), boots it in qemu-system-aarch64, and then:
//   - Hearth's HTTPS and plain HTTP listeners answer (any HTTP response: the
//     wizard does not exist yet);
//   - alice (STARTTLS on 5222) and carol (direct TLS on 5223) log in and
//     exchange messages; alice leaves a message for bob, who is offline;
//   - `gok update` installs a new build over the network (the VM reboots into
//     the other root partition);
//   - the new build answers (its XEP-0092 version changed), the three accounts
//     still log in, and bob receives the offline message with its delay stamp.
//
// It takes a few minutes (software emulation): it runs with HEARTH_IMAGE_TEST=1
// (make image-test) or HEARTH_SLOW=1 (make test-slow), and is skipped otherwise.
func TestImageQEMU(t *testing.T) {
	if os.Getenv("HEARTH_IMAGE_TEST") != "1" && os.Getenv("HEARTH_SLOW") != "1" {
		t.Skip("boots the SD-card image in QEMU: set HEARTH_IMAGE_TEST=1 (make image-test) or HEARTH_SLOW=1")
	}
	v := newVM(t)
	pw := map[string]string{"alice": secret(t), "bob": secret(t), "carol": secret(t)}
	v.env = append(v.env, fmt.Sprintf("IMAGE_TEST_USERS=alice:%s bob:%s carol:%s", pw["alice"], pw["bob"], pw["carol"]))

	t.Cleanup(func() { v.script(context.Background(), "stop") })
	v.run("boot", "HEARTH_VERSION=imagetest-boot")
	v.figure("hearth idle RSS after boot (MiB)", v.hearthRSS())

	v.checkWeb()
	if got := v.serverVersion(pw["alice"]); got != "imagetest-boot" {
		t.Fatalf("server version before the update = %q, want imagetest-boot", got)
	}

	// alice and carol are online: a message each way.
	alice := v.login(false, "alice", pw["alice"])
	carol := v.login(true, "carol", pw["carol"])
	alice.Send("<presence/>")
	carol.Send("<presence/>")
	alice.Send("<message type='chat' id='m1' to='carol@%s'><body>hello carol</body></message>", domain)
	carol.Expect(xmpptest.IsMessage("hello carol"))
	carol.Send("<message type='chat' id='m2' to='%s'><body>hello alice</body></message>", alice.JID)
	alice.Expect(xmpptest.IsMessage("hello alice"))

	// bob has never logged in: the message goes to offline storage on /perm.
	// Stanzas of one stream are handled in order, so the ping's answer means
	// the message was stored.
	alice.Send("<message type='chat' id='m3' to='bob@%s'><body>for bob, across the update</body></message>", domain)
	if r := alice.IQ("get", domain, "<ping xmlns='urn:xmpp:ping'/>"); r.Get("type") != "result" {
		t.Fatalf("ping after the offline message: %s", r)
	}
	alice.Close()
	carol.Close()

	v.run("update", "HEARTH_VERSION=imagetest-update")
	v.checkWeb()
	v.figure("hearth idle RSS after the update (MiB)", v.hearthRSS())
	if got := v.serverVersion(pw["alice"]); got != "imagetest-update" {
		t.Fatalf("server version after the update = %q, want imagetest-update (the update did not install the new build)", got)
	}

	bob := v.login(false, "bob", pw["bob"])
	bob.Send("<presence/>")
	msg := bob.Expect(xmpptest.IsMessage("for bob, across the update"))
	if !strings.HasPrefix(msg.Get("from"), "alice@"+domain) {
		t.Errorf("offline message from %q, want alice@%s", msg.Get("from"), domain)
	}
	if msg.Child("urn:xmpp:delay", "delay") == nil {
		t.Errorf("offline message without a XEP-0203 delay stamp: %s", msg)
	}
	carol = v.login(true, "carol", pw["carol"])
	carol.Send("<presence/>")
	bob.Send("<message type='chat' id='m4' to='carol@%s'><body>bob is back</body></message>", domain)
	carol.Expect(xmpptest.IsMessage("bob is back"))
}

func newVM(t *testing.T) *vm {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("IMAGE_OUT")
	if out == "" {
		out = filepath.Join(root, "image", "out")
	}
	p := freePorts(t, 5)
	v := &vm{t: t, root: root, out: out,
		https: p[0], http: p[1], c2s: p[2], c2sTLS: p[3], gokr: p[4]}
	port := func(a string) string { _, p, _ := net.SplitHostPort(a); return p }
	v.env = []string{
		"IMAGE_OUT=" + out,
		"QEMU_HTTPS_PORT=" + port(v.https), "QEMU_HTTP_PORT=" + port(v.http),
		"QEMU_C2S_PORT=" + port(v.c2s), "QEMU_C2S_TLS_PORT=" + port(v.c2sTLS),
		"GOKRAZY_HTTP_PORT=" + port(v.gokr),
	}
	return v
}

// freePorts returns n distinct loopback addresses that were free a moment ago.
func freePorts(t *testing.T, n int) []string {
	var addrs []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

func secret(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// script runs scripts/image-test.sh cmd and returns its output.
func (v *vm) script(ctx context.Context, cmd string, env ...string) (string, error) {
	c := exec.CommandContext(ctx, "bash", filepath.Join(v.root, "scripts", "image-test.sh"), cmd)
	c.Dir = v.root
	c.Env = append(append(os.Environ(), v.env...), env...)
	var buf bytes.Buffer
	c.Stdout = &buf
	c.Stderr = &buf
	err := c.Run()
	return buf.String(), err
}

// run runs a script step (bounded by 20 minutes), logs its output and the
// figures it printed ("...: N s").
func (v *vm) run(cmd string, env ...string) {
	v.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := v.script(ctx, cmd, env...)
	var keep []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if l := sc.Text(); !strings.HasPrefix(l, "go: downloading") {
			keep = append(keep, l)
		}
	}
	v.t.Logf("scripts/image-test.sh %s (%.1f s):\n%s", cmd, time.Since(start).Seconds(), strings.Join(keep, "\n"))
	if err != nil {
		v.t.Fatalf("scripts/image-test.sh %s: %v", cmd, err)
	}
}

func (v *vm) figure(name string, value float64) {
	v.t.Logf("FIGURE %s: %.1f", name, value)
}

// hearthRSS reads Hearth's resident set size from gokrazy's web interface,
// which shows it per service (from /proc/PID/statm): there is no shell.
func (v *vm) hearthRSS() float64 {
	v.t.Helper()
	pw, err := os.ReadFile(filepath.Join(v.out, "hearth-qemu.secrets", "gokrazy-password"))
	if err != nil {
		v.t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+v.gokr+"/", nil)
	req.SetBasicAuth("gokrazy", strings.TrimSpace(string(pw)))
	cl := &http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		v.t.Fatalf("gokrazy web interface: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		v.t.Fatalf("gokrazy web interface: %s", resp.Status)
	}
	m := regexp.MustCompile(`title="/user/hearth uses ([0-9.]+) MiB RSS"`).FindSubmatch(body)
	if m == nil {
		v.t.Fatalf("no RSS for /user/hearth on gokrazy's overview page")
	}
	rss, _ := strconv.ParseFloat(string(m[1]), 64)
	return rss
}

// checkWeb: Hearth's HTTPS listener (TLS 1.2+, its self-signed certificate
// for the domain) and its plain HTTP listener answer with an HTTP response.
func (v *vm) checkWeb() {
	v.t.Helper()
	cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
	}}
	resp, err := cl.Get("https://" + v.https + "/")
	if err != nil {
		v.t.Fatalf("HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 || resp.TLS.PeerCertificates[0].VerifyHostname(domain) != nil {
		v.t.Errorf("HTTPS certificate is not for %s", domain)
	}
	v.t.Logf("HTTPS GET / -> %s (%s)", resp.Status, resp.Proto)
	resp, err = cl.Get("http://" + v.http + "/")
	if err != nil {
		v.t.Fatalf("HTTP: %v", err)
	}
	resp.Body.Close()
	v.t.Logf("HTTP GET / -> %s", resp.Status)
}

// login logs user in over STARTTLS (port 5222) or direct TLS (port 5223).
func (v *vm) login(direct bool, user, password string) *xmpptest.Client {
	v.t.Helper()
	if !direct {
		c := xmpptest.Dial(v.t, v.c2s, domain)
		c.Login(user, password, "")
		return c
	}
	c := xmpptest.DialTLS(v.t, v.c2sTLS, domain, &tls.Config{
		InsecureSkipVerify: true, ServerName: domain, NextProtos: []string{"xmpp-client"},
	})
	c.OpenStream()
	if el := c.Auth(user, password); el.Name.Local != "success" {
		v.t.Fatalf("auth of %s failed: %s", user, el)
	}
	c.OpenStream()
	c.Bind("")
	return c
}

// serverVersion asks the server for its software version (XEP-0092).
func (v *vm) serverVersion(alicePW string) string {
	v.t.Helper()
	c := v.login(false, "alice", alicePW)
	defer c.Close()
	r := c.IQ("get", domain, "<query xmlns='jabber:iq:version'/>")
	q := r.Child("jabber:iq:version", "query")
	if r.Get("type") != "result" || q == nil {
		v.t.Fatalf("version query: %s", r)
	}
	return q.ChildText("", "version")
}
