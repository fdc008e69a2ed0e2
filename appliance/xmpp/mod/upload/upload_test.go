package upload

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

var bg = context.Background()

const component = "upload." + modtest.Domain

// env is a server with the upload component, an HTTPS listener on loopback
// and an HTTP client that verifies Hearth's certificate.
type env struct {
	*modtest.Env
	svc  *Service
	dir  string
	base string
	http *http.Client
}

func setup(t *testing.T, opts ...Option) *env {
	t.Helper()
	e := modtest.New(t)
	disco.Register(e.S)
	web := httpd.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		web.Shutdown(ctx)
	})
	cert := modtest.Certificate(t)
	addr, err := web.ListenTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + addr.String()
	dir := filepath.Join(t.TempDir(), "uploads")
	svc, err := Register(e.S, web, dir, append([]Option{BaseURL(base)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: modtest.Domain},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	e.AddUser("alice", "pw")
	e.AddUser("bob", "pw")
	return &env{Env: e, svc: svc, dir: dir, base: base, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// request asks for a slot as c and returns the IQ answer.
func request(c *modtest.Client, filename string, size int64, ct string) *xmlel.Element {
	c.T.Helper()
	req := xmlel.New(NS, "request", "filename", filename, "size", strconv.FormatInt(size, 10), "content-type", ct)
	return c.Request("get", component, req.String())
}

// slotURLs returns the put and get URLs of a slot answer.
func slotURLs(t testing.TB, iq *xmlel.Element) (put, get string) {
	t.Helper()
	slot := iq.Child(NS, "slot")
	if iq.Get("type") != "result" || slot == nil || slot.Child(NS, "put") == nil || slot.Child(NS, "get") == nil {
		t.Fatalf("no slot: %s", iq)
	}
	if len(slot.Child(NS, "put").Elements()) != 0 {
		t.Errorf("PUT headers given: %s", slot)
	}
	return slot.Child(NS, "put").Get("url"), slot.Child(NS, "get").Get("url")
}

// do sends an HTTP request; contentLength < 0 sends the body chunked.
func (e *env) do(method, u string, body []byte, contentLength int64, hdr ...string) (*http.Response, []byte) {
	e.T.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
		if contentLength < 0 {
			rd = io.MultiReader(rd) // hides the length
		}
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		e.T.Fatal(err)
	}
	if body != nil {
		req.ContentLength = contentLength
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.http.Do(req)
	if err != nil {
		e.T.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.T.Fatal(err)
	}
	return res, b
}

func (e *env) put(u string, body []byte, hdr ...string) int {
	e.T.Helper()
	res, _ := e.do("PUT", u, body, int64(len(body)), hdr...)
	return res.StatusCode
}

// upload requests a slot as c and uploads data; it returns the GET URL.
func (e *env) upload(c *modtest.Client, name string, data []byte) string {
	e.T.Helper()
	put, get := slotURLs(e.T, request(c, name, int64(len(data)), "application/octet-stream"))
	if code := e.put(put, data, "Content-Type", "application/octet-stream"); code != http.StatusCreated {
		e.T.Fatalf("PUT: %d", code)
	}
	return get
}

// stored lists the names in the files and tmp directories.
func (e *env) stored() (files, tmps []string) {
	e.T.Helper()
	for _, d := range []struct {
		dir string
		out *[]string
	}{{filesDir(e.dir), &files}, {tmpDir(e.dir), &tmps}} {
		des, err := os.ReadDir(d.dir)
		if err != nil {
			e.T.Fatal(err)
		}
		for _, de := range des {
			*d.out = append(*d.out, de.Name())
		}
	}
	return files, tmps
}

func appError(iq *xmlel.Element, local string) *xmlel.Element {
	if e := iq.Child(server.NSClient, "error"); e != nil {
		return e.Child(NS, local)
	}
	return nil
}

func TestDiscoInfo(t *testing.T) {
	e := setup(t, MaxFileSize(5000), DailyQuota(1<<20))
	c := e.Connect("alice", "pw")
	items := c.Request("get", modtest.Domain, `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
	if items.Child(NSDiscoItems, "query") == nil || !strings.Contains(items.String(), `jid="`+component+`"`) {
		t.Fatalf("server disco#items does not list the component: %s", items)
	}
	info := c.Request("get", component, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	q := info.Child(NSDiscoInfo, "query")
	if info.Get("type") != "result" || info.Get("from") != component || q == nil {
		t.Fatalf("disco#info: %s", info)
	}
	id := q.Child(NSDiscoInfo, "identity")
	if id == nil || id.Get("category") != "store" || id.Get("type") != "file" {
		t.Errorf("identity: %s", q)
	}
	feats := map[string]bool{}
	for _, f := range q.ChildrenNamed(NSDiscoInfo, "feature") {
		feats[f.Get("var")] = true
	}
	if !feats[NS] || !feats[NSDiscoInfo] {
		t.Errorf("features: %v", feats)
	}
	x := q.Child(NSData, "x")
	if x == nil || x.Get("type") != "result" {
		t.Fatalf("no XEP-0128 form: %s", q)
	}
	fields := map[string]string{}
	for _, f := range x.ChildrenNamed(NSData, "field") {
		fields[f.Get("var")] = f.ChildText(NSData, "value")
	}
	if fields["FORM_TYPE"] != NS || fields["max-file-size"] != "5000" {
		t.Errorf("form fields %v", fields)
	}
	// The quota and the cap lower the advertised size.
	e2 := setup(t, MaxFileSize(5000), DailyQuota(3000), StorageCap(4000))
	if got := e2.svc.discoInfo().String(); !strings.Contains(got, "<value>3000</value>") {
		t.Errorf("max-file-size with a smaller quota: %s", got)
	}

	if r := c.Request("get", component, `<query xmlns='http://jabber.org/protocol/disco#items'/>`); r.Get("type") != "result" ||
		len(r.Child(NSDiscoItems, "query").Elements()) != 0 {
		t.Errorf("disco#items: %s", r)
	}
	modtest.WantIQError(t, c.Request("get", component, `<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>`), "item-not-found")
	modtest.WantIQError(t, c.Request("get", component, `<ping xmlns='urn:xmpp:ping'/>`), "service-unavailable")
	modtest.WantIQError(t, c.Request("set", component, `<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'/>`), "service-unavailable")
	modtest.WantIQError(t, c.Request("get", "someone@"+component, `<request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'/>`), "service-unavailable")
	c.Send(xmlel.MustParse(`<message xmlns='jabber:client' to='` + component + `' id='m1'><body>hi</body></message>`))
	answered := false
	for i := 0; i < 10 && !answered; i++ {
		if m := c.Next(); m.Name.Local == "message" {
			answered = true
			if m.Get("type") != "error" || m.Get("id") != "m1" || !strings.Contains(m.String(), "service-unavailable") {
				t.Errorf("message answer: %s", m)
			}
		}
	}
	if !answered {
		t.Error("no answer to a message to the component")
	}
}

func TestSlotRequestErrors(t *testing.T) {
	e := setup(t, MaxFileSize(1000))
	c := e.Connect("alice", "pw")
	for _, req := range []string{
		`<request xmlns='urn:xmpp:http:upload:0' size='10' content-type='text/plain'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='' size='10'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a/b.txt' size='10'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a\b.txt' size='10'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='..' size='10'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a&#x9;b' size='10'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='` + strings.Repeat("x", 256) + `' size='10'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='0'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='-5'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='1e3'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='99999999999999999999999'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='10' content-type='text'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='10' content-type='text/'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='10' content-type='text/plain; charset'/>`,
		`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='10' content-type='` + strings.Repeat("a", 250) + `/plain'/>`,
	} {
		r := c.Request("get", component, req)
		if modtest.ErrorCondition(r) != "bad-request" {
			t.Errorf("%s: got %s, want bad-request", req, r)
		}
	}

	// Too large: not-acceptable with the limit (XEP-0363 §5).
	r := request(c, "big.bin", 1001, "")
	modtest.WantIQError(t, r, "not-acceptable")
	ftl := appError(r, "file-too-large")
	if ftl == nil || ftl.ChildText(NS, "max-file-size") != "1000" || r.Child(server.NSClient, "error").Get("type") != "modify" {
		t.Fatalf("file-too-large: %s", r)
	}
	// Exactly at the limit is fine; nothing was stored for the refusals.
	slotURLs(t, request(c, "ok.bin", 1000, ""))
	if st, err := e.Store.UploadIDs(bg); err != nil || len(st) != 1 {
		t.Fatalf("stored slots %v, %v", st, err)
	}

	// Only local accounts get slots.
	req := xmlel.MustParse(`<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' size='10'/>`)
	for _, from := range []string{"mallory@evil.example/x", modtest.Domain, "nobody@" + modtest.Domain + "/r"} {
		_, err := e.svc.slot(bg, req, jid.MustParse(from))
		modtest.WantCondition(t, err, "not-allowed")
	}
}

func TestQuota(t *testing.T) {
	e := setup(t, DailyQuota(100), MaxFileSize(60))
	alice := e.Connect("alice", "pw")
	t0 := e.Clock.Now()
	e.upload(alice, "a", make([]byte, 60))
	e.Clock.Advance(time.Hour)
	e.upload(alice, "b", make([]byte, 30))
	e.Clock.Advance(time.Minute)
	slotURLs(t, request(alice, "c", 10, "")) // 100: exactly the quota, an open slot
	r := request(alice, "d", 5, "")
	modtest.WantIQError(t, r, "resource-constraint")
	e1 := r.Child(server.NSClient, "error")
	if e1.Get("type") != "wait" || !strings.Contains(e1.ChildText(server.NSStanzas, "text"), "Quota") {
		t.Errorf("quota error: %s", r)
	}
	// 5 more bytes fit once the 60-byte upload leaves the window.
	if rt := appError(r, "retry"); rt == nil || rt.Get("stamp") != t0.Add(QuotaWindow).UTC().Format(time.RFC3339) {
		t.Errorf("retry: %s", r)
	}
	// Another account has its own quota.
	bob := e.Connect("bob", "pw")
	slotURLs(t, request(bob, "x", 60, ""))
	// The unused slot stops counting when it expires; uploaded files go on.
	e.Clock.Advance(DefaultSlotTimeout)
	slotURLs(t, request(alice, "e", 10, ""))
	r = request(alice, "f", 10, "")
	modtest.WantIQError(t, r, "resource-constraint")
	if rt := appError(r, "retry"); rt == nil || rt.Get("stamp") != t0.Add(QuotaWindow).UTC().Format(time.RFC3339) {
		t.Errorf("retry: %s", r)
	}
	e.Clock.Advance(t0.Add(QuotaWindow).Sub(e.Clock.Now()))
	slotURLs(t, request(alice, "g", 50, ""))
}

func TestStorageCap(t *testing.T) {
	e := setup(t, DailyQuota(0), StorageCap(100))
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")
	e.upload(alice, "a", make([]byte, 60))
	r := request(bob, "b", 50, "")
	modtest.WantIQError(t, r, "resource-constraint")
	if !strings.Contains(r.String(), "storage") {
		t.Errorf("cap error text: %s", r)
	}
	slotURLs(t, request(bob, "b", 40, ""))

	// The free-disk reserve.
	e2 := setup(t, MinFreeDisk(1<<20))
	e2.svc.freeDisk = func(string) (int64, error) { return 1<<20 + 99, nil }
	c := e2.Connect("alice", "pw")
	slotURLs(t, request(c, "a", 99, ""))
	modtest.WantIQError(t, request(c, "b", 100, ""), "resource-constraint")
}

func TestPutGet(t *testing.T) {
	e := setup(t)
	c := e.Connect("alice", "pw")
	data := []byte("hello, upload world")
	put, get := slotURLs(t, request(c, "très cool.txt", int64(len(data)), "text/plain"))
	if put != get || !strings.HasPrefix(put, e.base+PathPrefix) || !strings.HasSuffix(put, "/tr%C3%A8s%20cool.txt") {
		t.Fatalf("URLs %s %s", put, get)
	}
	tok := strings.Split(strings.TrimPrefix(put, e.base+PathPrefix), "/")[0]
	if len(tok) < 22 { // 128 bits of base64
		t.Fatalf("token %q too short", tok)
	}
	if other, _ := slotURLs(t, request(c, "très cool.txt", int64(len(data)), "text/plain")); other == put {
		t.Fatal("two slots got the same URL")
	}

	// Refused PUTs store nothing.
	res, _ := e.do("PUT", put, data[:5], 5)
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("short PUT: %d", res.StatusCode)
	}
	if code := e.put(put, append(data, '!')); code != http.StatusRequestEntityTooLarge {
		t.Errorf("long PUT: %d", code)
	}
	if res, _ := e.do("PUT", put, data, -1); res.StatusCode != http.StatusLengthRequired {
		t.Errorf("chunked PUT: %d", res.StatusCode)
	}
	if code := e.put(put, data, "Content-Type", "text/html"); code != http.StatusUnsupportedMediaType {
		t.Errorf("PUT with another type: %d", code)
	}
	if res, _ := e.do("GET", get, nil, 0); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET before PUT: %d", res.StatusCode)
	}
	if files, tmps := e.stored(); len(files)+len(tmps) != 0 {
		t.Fatalf("refused PUTs left files %v %v", files, tmps)
	}

	if code := e.put(put, data, "Content-Type", "text/plain; charset=utf-8"); code != http.StatusCreated {
		t.Fatalf("PUT: %d", code)
	}
	if code := e.put(put, data, "Content-Type", "text/plain"); code != http.StatusConflict {
		t.Errorf("second PUT: %d", code)
	}
	files, tmps := e.stored()
	if len(files) != 1 || len(tmps) != 0 || files[0] != digest(tok) {
		t.Fatalf("stored %v %v", files, tmps)
	}
	if b, _ := os.ReadFile(filepath.Join(filesDir(e.dir), files[0])); !bytes.Equal(b, data) {
		t.Fatalf("file content %q", b)
	}

	res, body := e.do("GET", get, nil, 0, "Origin", "https://web.example")
	h := res.Header
	if res.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET: %d %q", res.StatusCode, body)
	}
	if res.ProtoMajor != 2 {
		t.Errorf("GET over %s, want HTTP/2 (ALPN)", res.Proto)
	}
	for k, want := range map[string]string{
		"Content-Type":                "text/plain",
		"Content-Disposition":         "inline; filename*=utf-8''tr%C3%A8s%20cool.txt",
		"Content-Security-Policy":     ContentSecurityPolicy,
		"X-Content-Type-Options":      "nosniff",
		"Access-Control-Allow-Origin": "*",
		"Content-Length":              strconv.Itoa(len(data)),
	} {
		if got := h.Get(k); got != want {
			t.Errorf("GET %s: %q, want %q", k, got, want)
		}
	}
	etag := h.Get("ETag")
	if len(etag) < 10 || !strings.HasPrefix(h.Get("Cache-Control"), "private, max-age=") || h.Get("Last-Modified") == "" {
		t.Errorf("GET caching headers: %v", h)
	}

	res, body = e.do("HEAD", get, nil, 0)
	if res.StatusCode != 200 || len(body) != 0 || res.ContentLength != int64(len(data)) {
		t.Errorf("HEAD: %d %d %q", res.StatusCode, res.ContentLength, body)
	}
	res, body = e.do("GET", get, nil, 0, "Range", "bytes=7-12")
	if res.StatusCode != http.StatusPartialContent || string(body) != "upload" ||
		res.Header.Get("Content-Range") != fmt.Sprintf("bytes 7-12/%d", len(data)) {
		t.Errorf("range GET: %d %q %v", res.StatusCode, body, res.Header)
	}
	if res, _ = e.do("GET", get, nil, 0, "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET: %d", res.StatusCode)
	}
	// The name in the URL is for people; the token finds the file.
	if res, body = e.do("GET", e.base+PathPrefix+tok+"/other.txt", nil, 0); res.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Errorf("GET with another name: %d", res.StatusCode)
	}
	for _, u := range []string{
		e.base + PathPrefix + strings.Repeat("A", len(tok)) + "/x",
		e.base + PathPrefix + "short/x",
		e.base + PathPrefix + tok,
	} {
		if res, _ := e.do("GET", u, nil, 0); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d", u, res.StatusCode)
		}
	}

	// CORS preflight for a browser's PUT, and an unknown method.
	res, _ = e.do("OPTIONS", put, nil, 0, "Origin", "https://web.example", "Access-Control-Request-Method", "PUT",
		"Access-Control-Request-Headers", "content-type")
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("preflight: %d %v", res.StatusCode, res.Header)
	}
	if res, _ = e.do("POST", put, []byte("x"), 1); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", res.StatusCode)
	}

	// A larger file goes through in pieces, and without a requested type the
	// PUT's type is kept.
	big := bytes.Repeat([]byte("0123456789abcdef"), 200_000) // 3.2 MB
	put2, get2 := slotURLs(t, request(c, "big.bin", int64(len(big)), ""))
	if code := e.put(put2, big, "Content-Type", "application/x-test"); code != http.StatusCreated {
		t.Fatalf("big PUT: %d", code)
	}
	res, body = e.do("GET", get2, nil, 0)
	if !bytes.Equal(body, big) || res.Header.Get("Content-Type") != "application/x-test" {
		t.Fatalf("big GET: %d bytes, %s", len(body), res.Header.Get("Content-Type"))
	}
}

func TestPlainHTTP(t *testing.T) {
	for _, allow := range []bool{false, true} {
		e := setup(t, AllowPlainHTTP(allow))
		web := httpd.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
		web.Handle(PathPrefix+"{token}/{name}", e.svc)
		addr, err := web.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { web.Shutdown(bg) })
		c := e.Connect("alice", "pw")
		put, _ := slotURLs(t, request(c, "a.txt", 3, ""))
		u, _ := url.Parse(put)
		u.Scheme, u.Host = "http", addr.String()
		want := http.StatusForbidden
		if allow {
			want = http.StatusCreated
		}
		if code := e.put(u.String(), []byte("abc")); code != want {
			t.Errorf("allow %v: plain PUT %d, want %d", allow, code, want)
		}
	}
}

func TestSlotExpiry(t *testing.T) {
	e := setup(t, SlotTimeout(time.Minute))
	c := e.Connect("alice", "pw")
	put, _ := slotURLs(t, request(c, "a.txt", 3, ""))
	e.Clock.Advance(time.Minute)
	if code := e.put(put, []byte("abc")); code != http.StatusGone {
		t.Errorf("PUT on an expired slot: %d", code)
	}
	ps, err := e.svc.Prune(bg)
	if err != nil || ps.Slots != 1 {
		t.Fatalf("Prune = %+v, %v", ps, err)
	}
	if code := e.put(put, []byte("abc")); code != http.StatusNotFound {
		t.Errorf("PUT on a removed slot: %d", code)
	}
}

func TestRetention(t *testing.T) {
	e := setup(t, Retention(24*time.Hour))
	tick := make(chan time.Time)
	e.svc.tick = tick
	c := e.Connect("alice", "pw")
	get := e.upload(c, "a.txt", []byte("old"))
	e.Clock.Advance(20 * time.Hour)
	getNew := e.upload(c, "b.txt", []byte("new"))
	// Leftovers of a crash: a temporary file and a file without a row.
	for _, p := range []string{filepath.Join(tmpDir(e.dir), strings.Repeat("a", 64)+"-123"), filepath.Join(filesDir(e.dir), strings.Repeat("b", 64))} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(bg)
	done := e.svc.Start(ctx)
	tick <- time.Now() // the first pass (at once) is over: only the leftovers went
	if files, tmps := e.stored(); len(files) != 2 || len(tmps) != 0 {
		t.Fatalf("after the first pass: %v %v", files, tmps)
	}
	if res, body := e.do("GET", get, nil, 0); res.StatusCode != 200 || string(body) != "old" {
		t.Fatalf("GET before expiry: %d %q", res.StatusCode, body)
	}
	e.Clock.Advance(4 * time.Hour) // "old" is 24 hours old
	if res, _ := e.do("GET", get, nil, 0); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET of an expired file: %d", res.StatusCode)
	}
	tick <- time.Now()
	tick <- time.Now() // the pass after the advance is over
	files, _ := e.stored()
	if len(files) != 1 {
		t.Fatalf("after expiry: %v", files)
	}
	if res, body := e.do("GET", getNew, nil, 0); res.StatusCode != 200 || string(body) != "new" {
		t.Errorf("GET of the newer file: %d %q", res.StatusCode, body)
	}
	if u, err := e.svc.Usage(bg); err != nil || u.Files != 1 || u.Bytes != 3 {
		t.Errorf("Usage = %+v, %v", u, err)
	}
	cancel()
	<-done
	if res, _ := e.do("GET", get, nil, 0); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET after pruning: %d", res.StatusCode)
	}

	// Retention 0 keeps files forever.
	e2 := setup(t, Retention(0))
	c2 := e2.Connect("alice", "pw")
	get2 := e2.upload(c2, "a.txt", []byte("kept"))
	e2.Clock.Advance(10 * 365 * 24 * time.Hour)
	if ps, err := e2.svc.Prune(bg); err != nil || ps != (PruneStats{}) {
		t.Errorf("Prune with retention 0 = %+v, %v", ps, err)
	}
	if res, body := e2.do("GET", get2, nil, 0); res.StatusCode != 200 || string(body) != "kept" {
		t.Errorf("GET with retention 0: %d %q", res.StatusCode, body)
	}
}

// TestInterruptedPUT: a PUT in progress holds its slot (a second PUT gets
// 409 and pruning leaves its temporary file alone); a body that ends early
// leaves nothing, and the slot can be used again.
func TestInterruptedPUT(t *testing.T) {
	e := setup(t, SlotTimeout(time.Minute))
	c := e.Connect("alice", "pw")
	data := []byte("0123456789")
	put, get := slotURLs(t, request(c, "a.txt", int64(len(data)), ""))
	u, _ := url.Parse(put)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", u.RequestURI(), u.Host, len(data), data[:4])
	active := func() bool {
		e.svc.mu.Lock()
		defer e.svc.mu.Unlock()
		return len(e.svc.active) == 1
	}
	modtest.Eventually(t, "the first PUT to start", active)
	if code := e.put(put, data); code != http.StatusConflict {
		t.Errorf("PUT while another is in progress: %d", code)
	}
	e.Clock.Advance(time.Minute) // the slot expires, but its upload started in time
	if ps, err := e.svc.Prune(bg); err != nil || ps != (PruneStats{}) {
		t.Errorf("Prune during a PUT = %+v, %v", ps, err)
	}
	modtest.Eventually(t, "the temporary file", func() bool { _, tmps := e.stored(); return len(tmps) == 1 })
	conn.Close()
	modtest.Eventually(t, "the first PUT to end", func() bool { return !active() })
	if files, tmps := e.stored(); len(files)+len(tmps) != 0 {
		t.Fatalf("an interrupted PUT left %v %v", files, tmps)
	}
	if res, _ := e.do("GET", get, nil, 0); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET after an interrupted PUT: %d", res.StatusCode)
	}
	// The slot has expired meanwhile: a new one works.
	if code := e.put(put, data); code != http.StatusGone {
		t.Errorf("PUT on the expired slot: %d", code)
	}
	put, get = slotURLs(t, request(c, "a.txt", int64(len(data)), ""))
	if code := e.put(put, data); code != http.StatusCreated {
		t.Fatalf("PUT: %d", code)
	}
	if _, body := e.do("GET", get, nil, 0); !bytes.Equal(body, data) {
		t.Errorf("GET: %q", body)
	}
}

func TestDeleteUserFiles(t *testing.T) {
	e := setup(t)
	alice := e.Connect("alice", "pw")
	bob := e.Connect("bob", "pw")
	a1 := e.upload(alice, "1", []byte("aaaa"))
	a2 := e.upload(alice, "2", []byte("aa"))
	slotURLs(t, request(alice, "3", 5, "")) // an open slot
	b1 := e.upload(bob, "1", []byte("bbb"))
	u, err := Usage(bg, e.Store)
	if err != nil || u.Files != 3 || u.Bytes != 9 || u.PerUser["alice"] != 6 || u.PerUser["bob"] != 3 {
		t.Fatalf("Usage = %+v, %v", u, err)
	}
	n, size, err := e.svc.DeleteUserFiles(bg, "alice")
	if n != 2 || size != 6 || err != nil {
		t.Fatalf("DeleteUserFiles = %d, %d, %v", n, size, err)
	}
	for _, g := range []string{a1, a2} {
		if res, _ := e.do("GET", g, nil, 0); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET of a deleted user's file: %d", res.StatusCode)
		}
	}
	if files, _ := e.stored(); len(files) != 1 {
		t.Errorf("files left: %v", files)
	}
	if n, _, err := DeleteUserFiles(bg, e.Store, e.dir, "alice"); n != 0 || err != nil {
		t.Errorf("DeleteUserFiles again = %d, %v", n, err)
	}

	// An account deleted without the module (the rows go by cascade): the
	// next pass reclaims the file.
	if err := e.Store.DeleteAccount(bg, "bob"); err != nil {
		t.Fatal(err)
	}
	if ps, err := e.svc.Prune(bg); err != nil || ps.Orphans != 1 {
		t.Errorf("Prune = %+v, %v", ps, err)
	}
	if files, _ := e.stored(); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
	if res, _ := e.do("GET", b1, nil, 0); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET of a deleted account's file: %d", res.StatusCode)
	}
}

func TestRegisterErrors(t *testing.T) {
	e := modtest.New(t)
	for _, base := range []string{"ftp://x", "https://", "https://x/?a=b", "example.org"} {
		if _, err := Register(e.S, nil, t.TempDir(), BaseURL(base)); err == nil {
			t.Errorf("base URL %q accepted", base)
		}
	}
	if _, err := Register(e.S, nil, t.TempDir(), Domain(modtest.Domain)); err == nil {
		t.Error("the served domain accepted as component domain")
	}
	s, err := Register(e.S, nil, t.TempDir(), MaxFileSize(-1), SlotTimeout(0), PruneInterval(0), Retention(-1), DailyQuota(-1))
	if err != nil {
		t.Fatal(err)
	}
	if s.maxFile != DefaultMaxFileSize || s.slotTTL != DefaultSlotTimeout || s.interval != DefaultPruneInterval || s.retention != 0 || s.quota != 0 {
		t.Errorf("options: %+v", s)
	}
	if s.ComponentDomain() != component {
		t.Errorf("domain %q", s.ComponentDomain())
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "100MiB": 100 << 20, "1g": 1 << 30, "1 GiB": 1 << 30,
		"500MB": 500e6, "2k": 2048, "7B": 7, "3TiB": 3 << 40,
	} {
		var b ByteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5G", "10XB", "MiB", "99999999999TiB"} {
		var b ByteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted: %d", in, b)
		}
	}
	for n, want := range map[int64]string{100 << 20: "100MiB", 1 << 30: "1GiB", 1000: "1000", 0: "0", 1536: "1536"} {
		b := ByteSize(n)
		if got := b.String(); got != want {
			t.Errorf("String(%d) = %q, want %q", n, got, want)
		}
	}
}
