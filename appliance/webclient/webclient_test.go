package webclient

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hearthxmpp/hearth/appliance/httpd"
)

var testCfg = Config{
	Domain:        "smith.example",
	MUCDomain:     "groups.smith.example",
	WebSocketPath: "/xmpp-websocket",
	HTTPSPort:     5281,
}

const fakeConverse = "/* converse */ export default {};\n"

// builtFS is a dist/ as scripts/build-webclient.sh leaves it, in miniature.
func builtFS(t *testing.T) fstest.MapFS {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	io.WriteString(zw, fakeConverse)
	zw.Close()
	return fstest.MapFS{
		".keep":              {Data: []byte("placeholder")},
		".built":             {Data: []byte("stamp")},
		"converse.min.js":    {Data: []byte(fakeConverse)},
		"converse.min.js.gz": {Data: gz.Bytes()},
		"converse.min.css":   {Data: []byte("body{}")},
		"webfonts/muli.ttf":  {Data: []byte("font")},
		"chunkjs/locales/de-LC_MESSAGES-converse-po.js": {Data: []byte("/* de */")},
	}
}

// serve runs one request through the handler mounted like the real server
// does (httpd's mux and common headers).
func serve(h http.Handler, method, url string, hdr map[string]string) *http.Response {
	web := httpd.New(nil)
	web.Handle("GET "+Path, h)
	req := httptest.NewRequest(method, url, nil)
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	web.Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var settingsRE = regexp.MustCompile(`(?s)<script id="hearth-config" type="application/json">(.*?)</script>`)

// TestIndexPreconfigured: the page at /chat/ starts Converse with this
// server's WebSocket on the request's host, the locked domain and the group
// chat service, under a same-origin-only CSP.
func TestIndexPreconfigured(t *testing.T) {
	h := newHandler(testCfg, builtFS(t))
	for _, host := range []string{"localhost:5281", "chat.smith.example", "[::1]:5281", "127.0.0.1:8443"} {
		t.Run(host, func(t *testing.T) {
			resp := serve(h, "GET", "https://"+host+"/chat/", map[string]string{"Host": host})
			page := body(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, page)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store (the page depends on Host)", cc)
			}
			csp := resp.Header.Get("Content-Security-Policy")
			for _, want := range []string{
				"default-src 'none'", "script-src 'self';", "connect-src 'self' wss://" + host + ";",
				"font-src 'self'", "img-src 'self' data: blob:", "frame-ancestors 'none'",
			} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "http:") || strings.Contains(csp, "https:") {
				t.Errorf("CSP allows more than this origin: %q", csp)
			}
			m := settingsRE.FindStringSubmatch(page)
			if m == nil {
				t.Fatalf("no hearth-config script in the page:\n%s", page)
			}
			var s map[string]any
			if err := json.Unmarshal([]byte(m[1]), &s); err != nil {
				t.Fatalf("hearth-config is not JSON: %v\n%s", err, m[1])
			}
			want := map[string]any{
				"websocket_url":               "wss://" + host + "/xmpp-websocket",
				"locked_domain":               "smith.example",
				"muc_domain":                  "groups.smith.example",
				"muc_search_service":          "groups.smith.example",
				"view_mode":                   "fullscreen",
				"assets_path":                 "/chat/dist",
				"discover_connection_methods": false,
				"allow_registration":          false,
				"use_system_emojis":           true,
				"autocomplete_providers_url":  "",
				"xmpp_providers_url":          "",
			}
			for k, v := range want {
				if s[k] != v {
					t.Errorf("setting %s = %#v, want %#v", k, s[k], v)
				}
			}
			if _, ok := s["bosh_service_url"]; ok {
				t.Errorf("bosh_service_url set without BOSHPath")
			}
			for _, ref := range []string{`src="hearth.js"`, `href="dist/converse.min.css"`} {
				if !strings.Contains(page, ref) {
					t.Errorf("page lacks %s", ref)
				}
			}
			if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
				t.Errorf("page refers to another site:\n%s", page)
			}
		})
	}
}

// TestIndexBOSH: a BOSHPath adds Converse's fallback transport on the same host.
func TestIndexBOSH(t *testing.T) {
	cfg := testCfg
	cfg.BOSHPath = "/http-bind"
	s := cfg.Settings("localhost:5281")
	if s["bosh_service_url"] != "https://localhost:5281/http-bind" {
		t.Errorf("bosh_service_url = %v", s["bosh_service_url"])
	}
}

// TestNotBuilt: without Converse's files /chat/ says how to build them (503),
// the assets are 404 and nothing panics.
func TestNotBuilt(t *testing.T) {
	h := newHandler(testCfg, fstest.MapFS{".keep": {Data: []byte("placeholder")}})
	resp := serve(h, "GET", "https://localhost:5281/chat/", nil)
	page := body(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if !strings.Contains(page, "make build") || !strings.Contains(page, "scripts/build-webclient.sh") {
		t.Errorf("the page does not say how to build the web client:\n%s", page)
	}
	for _, p := range []string{"/chat/hearth.js", "/chat/dist/converse.min.js", "/chat/dist/.keep"} {
		if resp := serve(h, "GET", "https://localhost:5281"+p, nil); resp.StatusCode != 404 {
			t.Errorf("GET %s: status %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestAssets: Converse's files are served with their types, gzipped to
// clients that accept it, with ETags that revalidate; no directory listing,
// no dot files, no path escapes.
func TestAssets(t *testing.T) {
	h := newHandler(testCfg, builtFS(t))
	get := func(path string, hdr map[string]string) *http.Response {
		return serve(h, "GET", "https://localhost:5281"+path, hdr)
	}

	resp := get("/chat/dist/converse.min.js", nil)
	if got := body(t, resp); resp.StatusCode != 200 || got != fakeConverse {
		t.Fatalf("plain: status %d body %q", resp.StatusCode, got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("plain: Content-Encoding %q Vary %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
	plainTag := resp.Header.Get("ETag")

	resp = get("/chat/dist/converse.min.js", map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip: status %d Content-Encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != fakeConverse {
		t.Errorf("gzip body decompresses to %q", b)
	}
	gzTag := resp.Header.Get("ETag")
	if plainTag == "" || gzTag == "" || plainTag == gzTag {
		t.Errorf("ETags plain %q gzip %q: want two different ones", plainTag, gzTag)
	}
	if resp := get("/chat/dist/converse.min.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0 got Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	resp = get("/chat/dist/converse.min.js", map[string]string{"If-None-Match": plainTag})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", resp.StatusCode)
	}

	for path, ct := range map[string]string{
		"/chat/dist/converse.min.css":                              "text/css; charset=utf-8",
		"/chat/dist/webfonts/muli.ttf":                             "font/ttf",
		"/chat/dist/chunkjs/locales/de-LC_MESSAGES-converse-po.js": "text/javascript; charset=utf-8",
		"/chat/hearth.js":                                          "text/javascript; charset=utf-8",
	} {
		resp := get(path, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ct {
			t.Errorf("GET %s: status %d Content-Type %q, want 200 %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), ct)
		}
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: no CSP", path)
		}
	}

	for _, path := range []string{
		"/chat/dist/", "/chat/dist/webfonts", "/chat/dist/webfonts/", "/chat/dist/.keep", "/chat/dist/.built",
		"/chat/dist/converse.min.js.gz", "/chat/dist/../webclient.go", "/chat/dist/%2e%2e/webclient.go",
		"/chat/dist/nope.js", "/chat/other", "/chat/static/hearth.js", "/chat/index.html",
	} {
		if resp := get(path, nil); resp.StatusCode != 404 && resp.StatusCode != 301 && resp.StatusCode != 307 {
			t.Errorf("GET %s: status %d, want 404 (or a redirect from the mux's path cleaning)", path, resp.StatusCode)
		} else if resp.StatusCode == 200 {
			t.Errorf("GET %s served", path)
		}
	}
}

// TestRequestChecks: bad Host headers, plain HTTP and other methods.
func TestRequestChecks(t *testing.T) {
	h := newHandler(testCfg, builtFS(t))
	for _, host := range []string{`evil.example; script-src *`, `a"b`, "a b", "-x.example", ""} {
		req := httptest.NewRequest("GET", "https://localhost/chat/", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("Host %q: status %d, want 400", host, rec.Code)
		}
		if strings.Contains(rec.Header().Get("Content-Security-Policy"), host) && host != "" {
			t.Errorf("Host %q reached the CSP", host)
		}
	}

	// Plain HTTP: redirected to the HTTPS port, same path and query.
	for host, want := range map[string]string{
		"hearth.local:5280": "https://hearth.local:5281/chat/?x=1",
		"hearth.local":      "https://hearth.local:5281/chat/?x=1",
		"[fe80::1]:5280":    "https://[fe80::1]:5281/chat/?x=1",
	} {
		req := httptest.NewRequest("GET", "http://"+host+"/chat/?x=1", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusPermanentRedirect || rec.Header().Get("Location") != want {
			t.Errorf("http://%s: status %d Location %q, want 308 %q", host, rec.Code, rec.Header().Get("Location"), want)
		}
	}
	cfg443 := testCfg
	cfg443.HTTPSPort = 443
	req := httptest.NewRequest("GET", "http://smith.example:80/chat/", nil)
	rec := httptest.NewRecorder()
	newHandler(cfg443, builtFS(t)).ServeHTTP(rec, req)
	if loc := rec.Header().Get("Location"); loc != "https://smith.example/chat/" {
		t.Errorf("port 443: Location %q", loc)
	}
	noTLS := testCfg
	noTLS.HTTPSPort = 0
	rec = httptest.NewRecorder()
	newHandler(noTLS, builtFS(t)).ServeHTTP(rec, httptest.NewRequest("GET", "http://localhost/chat/", nil))
	if rec.Code != http.StatusForbidden {
		t.Errorf("plain HTTP without an HTTPS port: status %d, want 403", rec.Code)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "https://localhost/chat/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", rec.Code)
	}
	if resp := serve(h, "HEAD", "https://localhost:5281/chat/", nil); resp.StatusCode != 200 {
		t.Errorf("HEAD: status %d", resp.StatusCode)
	}
	if resp := serve(h, "GET", "https://localhost:5281/chat", nil); resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/chat/" {
		t.Errorf("GET /chat: status %d Location %q, want a redirect to /chat/", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestEmbedded: the real embedded files agree with Built, and the served
// page is the 503 or the configured page accordingly.
func TestEmbedded(t *testing.T) {
	_, err := os.Stat("dist/converse.min.js")
	if Built() != (err == nil) {
		t.Fatalf("Built() = %v but dist/converse.min.js exists: %v", Built(), err == nil)
	}
	resp := serve(Handler(testCfg), "GET", "https://localhost:5281/chat/", nil)
	want := http.StatusServiceUnavailable
	if Built() {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d (built: %v)", resp.StatusCode, want, Built())
	}
	if !Built() {
		t.Skip("dist/ not built (scripts/build-webclient.sh): only the placeholder was checked")
	}
	dist, _ := fs.Sub(embeddedDist, distDir)
	for _, name := range []string{"converse.min.js", "converse.min.css", "emoji.json", "webfonts/muli.ttf", "sounds/msg_received.ogg"} {
		if _, err := fs.Stat(dist, name); err != nil {
			t.Errorf("embedded dist lacks %s: %v", name, err)
		}
		resp := serve(Handler(testCfg), "GET", "https://localhost:5281/chat/dist/"+name, nil)
		if resp.StatusCode != 200 {
			t.Errorf("GET /chat/dist/%s: status %d", name, resp.StatusCode)
		}
	}
	matches, _ := fs.Glob(dist, "chunkjs/locales/*.js")
	if len(matches) < 10 {
		t.Errorf("only %d locale chunks embedded", len(matches))
	}
}
