// Package webclient serves the web chat for family members without an XMPP
// app: Converse.js (npm package converse.js, pinned in package.json and
// package-lock.json here), embedded into the binary and preconfigured for this
// server, at /chat/.
//
// scripts/build-webclient.sh (run by `make build`) fetches Converse with
// `npm ci` and copies the files the page loads into dist/, which go:embed
// includes. A binary built without that step (plain `go build`) still works:
// /chat/ then answers 503 with a page saying how to build the client.
//
// The page loads nothing from other sites: every script, stylesheet, font,
// locale, emoji table and sound comes from dist/, Converse's sponsor footer is
// replaced by an empty element, and a Content-Security-Policy allows only this
// origin (plus the WebSocket to this host). Converse connects over RFC 7395
// WebSocket to wss://HOST/WebSocketPath, HOST being the request's Host, so the
// same binary works at https://localhost:5281 and at the family's domain.
package webclient

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Path is where Handler expects to be mounted: register it for "GET /chat/"
// (net/http.ServeMux syntax; ServeMux redirects "/chat" to it).
const Path = "/chat/"

// distDir is where the built Converse files are (below Path).
const distDir = "dist"

//go:embed all:dist
var embeddedDist embed.FS

//go:embed static
var staticFiles embed.FS

// Config is what the page is preconfigured with.
type Config struct {
	// Domain is the XMPP domain served ("localhost", "smith.example"). The
	// login form takes only the username and adds it (Converse's
	// locked_domain): other servers' accounts cannot log in here.
	Domain string
	// MUCDomain is the group chat service (XEP-0045), e.g. "groups.smith.example";
	// a room name typed without a domain is joined there (Converse's
	// muc_domain). Empty leaves Converse's default (no default service).
	MUCDomain string
	// WebSocketPath is the absolute path of the RFC 7395 endpoint on this
	// HTTPS server, e.g. "/xmpp-websocket". Required.
	WebSocketPath string
	// BOSHPath, when not empty, is the absolute path of the XEP-0206 BOSH
	// endpoint on this server, which Converse falls back to when the
	// WebSocket fails.
	BOSHPath string
	// HTTPSPort is the HTTPS port; a request that arrives over plain HTTP is
	// redirected there (308). 0 refuses plain HTTP requests with 403 instead:
	// the page asks for a password, so it is only served over TLS.
	HTTPSPort int
}

// Built reports whether this binary contains the Converse files, i.e. whether
// scripts/build-webclient.sh ran before it was compiled.
func Built() bool {
	_, err := fs.Stat(embeddedDist, distDir+"/converse.min.js")
	return err == nil
}

// Handler returns the handler for everything below Path: the page at Path,
// its start-up script, and Converse's files below Path+"dist/". Methods other
// than GET and HEAD get 405, unknown paths 404, a Host header that is not a
// host name or address with an optional port 400. Without the Converse files
// (see Built) the page is a 503 explaining how to build them.
func Handler(cfg Config) http.Handler {
	dist, err := fs.Sub(embeddedDist, distDir)
	if err != nil {
		panic(err) // distDir is a constant that go:embed guarantees exists
	}
	return newHandler(cfg, dist)
}

var (
	indexTemplate = template.Must(template.ParseFS(staticFiles, "static/index.html"))
	startScript   = mustRead(staticFiles, "static/hearth.js")
)

func mustRead(fsys fs.FS, name string) []byte {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		panic(err)
	}
	return b
}

type handler struct {
	cfg   Config
	dist  fs.FS
	built bool

	etags sync.Map // file name in dist -> quoted ETag of its content
}

func newHandler(cfg Config, dist fs.FS) *handler {
	_, err := fs.Stat(dist, "converse.min.js")
	return &handler{cfg: cfg, dist: dist, built: err == nil}
}

// hostRE matches what a Host header may hold here: a DNS name or IPv4
// address, or a bracketed IPv6 address, with an optional port. It keeps
// characters such as ';' and quotes out of the CSP header and the page.
var hostRE = regexp.MustCompile(`^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$`)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	host := r.Host
	if !hostRE.MatchString(host) {
		http.Error(w, "bad Host header", http.StatusBadRequest)
		return
	}
	if r.TLS == nil {
		h.insecure(w, r, host)
		return
	}
	w.Header().Set("Content-Security-Policy", csp(host))
	rest, ok := strings.CutPrefix(r.URL.Path, strings.TrimSuffix(Path, "/"))
	switch {
	case !ok:
		http.NotFound(w, r)
	case rest == "":
		http.Redirect(w, r, Path, http.StatusMovedPermanently)
	case rest == "/":
		h.index(w, host)
	case rest == "/hearth.js":
		if !h.built {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("ETag", etagOf(startScript))
		http.ServeContent(w, r, "hearth.js", time.Time{}, bytes.NewReader(startScript))
	case strings.HasPrefix(rest, "/dist/"):
		h.asset(w, r, strings.TrimPrefix(rest, "/dist/"))
	default:
		http.NotFound(w, r)
	}
}

// insecure answers a plain-HTTP request: a redirect to the same path on the
// HTTPS port, or 403 when there is none.
func (h *handler) insecure(w http.ResponseWriter, r *http.Request, host string) {
	if h.cfg.HTTPSPort == 0 {
		http.Error(w, "The web chat is served over HTTPS only.", http.StatusForbidden)
		return
	}
	name := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		name = hn
	}
	name = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
	if h.cfg.HTTPSPort != 443 {
		name = net.JoinHostPort(name, strconv.Itoa(h.cfg.HTTPSPort))
	} else if strings.Contains(name, ":") {
		name = "[" + name + "]"
	}
	target := "https://" + name + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	http.Redirect(w, r, target, http.StatusPermanentRedirect)
}

// csp is the page's Content-Security-Policy: this origin only, plus the
// WebSocket to this host (wss is not covered by 'self' in every browser).
// Inline style attributes are allowed because Converse's templates set some;
// inline scripts, eval and WebAssembly are not.
func csp(host string) string {
	return "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self'; " +
		"connect-src 'self' wss://" + host + "; manifest-src 'self'; worker-src 'self'; " +
		"frame-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
}

// Settings returns the Converse settings the page is started with for a
// request to host ("localhost:5281"), as passed to converse.initialize.
// Exposed for tests and documentation; see
// https://conversejs.org/docs/configuration/ for each key.
func (c Config) Settings(host string) map[string]any {
	s := map[string]any{
		"assets_path":                   strings.TrimSuffix(Path, "/") + "/" + distDir,
		"websocket_url":                 "wss://" + host + c.WebSocketPath,
		"discover_connection_methods":   false, // XEP-0156 would fetch https://DOMAIN/.well-known/host-meta
		"locked_domain":                 c.Domain,
		"view_mode":                     "fullscreen",
		"allow_registration":            false, // accounts come from the operator or invites
		"muc_nickname_from_jid":         true,  // family members are not asked for a nickname per room
		"use_system_emojis":             true,  // no emoji images from a CDN
		"embed_3rd_party_media_players": false, // no YouTube/Spotify frames
		"notification_icon":             strings.TrimSuffix(Path, "/") + "/" + distDir + "/images/logo/conversejs-filled.svg",
		// Converse would fetch provider lists from data.xmpp.net (contact
		// address autocompletion, registration) and send typed room names to
		// a public room search service; the search goes to our own group
		// chat service instead (its error just means no suggestions), which
		// also keeps the room name input (Converse shows it only with a
		// search service set).
		"autocomplete_providers_url": "",
		"xmpp_providers_url":         "",
		"muc_search_service":         c.Domain,
		// OMEMO needs libomemo (GPL-3.0) and WebAssembly; the web client
		// leaves it out for now (messages stay TLS-protected to the server).
		"blacklisted_plugins": []string{"converse-omemo", "converse-omemo-views"},
	}
	if c.MUCDomain != "" {
		s["muc_domain"] = c.MUCDomain
		s["muc_search_service"] = c.MUCDomain
	}
	if c.BOSHPath != "" {
		s["bosh_service_url"] = "https://" + host + c.BOSHPath
	}
	return s
}

func (h *handler) index(w http.ResponseWriter, host string) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store") // the settings depend on the Host header
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	if !h.built {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, notBuiltPage)
		return
	}
	var buf bytes.Buffer
	err := indexTemplate.Execute(&buf, struct {
		Title, Domain string
		Settings      map[string]any
	}{"Chat · " + h.cfg.Domain, h.cfg.Domain, h.cfg.Settings(host)})
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Write(buf.Bytes())
}

const notBuiltPage = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Web chat not built</title></head>
<body>
<h1>The web chat is not part of this build</h1>
<p>This Hearth binary was compiled without the web client's files. Build it with
<code>make build</code> (which runs <code>scripts/build-webclient.sh</code>; it needs Node.js and npm)
and restart Hearth. XMPP apps can connect meanwhile.</p>
</body></html>
`

// contentTypes are the types of the files dist/ holds; anything else is
// served as application/octet-stream.
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".json": "application/json",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".ttf":  "font/ttf",
	".mp3":  "audio/mpeg",
	".ogg":  "audio/ogg",
	".txt":  "text/plain; charset=utf-8",
}

// asset serves one file of dist/: no directory listings, no dot files (the
// build stamp), the precompressed name.gz when the build made one and the
// client accepts gzip, an ETag of the content sent, revalidated on each use.
func (h *handler) asset(w http.ResponseWriter, r *http.Request, name string) {
	if !fs.ValidPath(name) || name == "." || strings.HasSuffix(name, ".gz") {
		http.NotFound(w, r)
		return
	}
	for _, el := range strings.Split(name, "/") {
		if strings.HasPrefix(el, ".") {
			http.NotFound(w, r)
			return
		}
	}
	if st, err := fs.Stat(h.dist, name); err != nil || st.IsDir() {
		http.NotFound(w, r)
		return
	}
	hdr := w.Header()
	send := name
	if _, err := fs.Stat(h.dist, name+".gz"); err == nil {
		hdr.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Values("Accept-Encoding")) {
			send = name + ".gz"
			hdr.Set("Content-Encoding", "gzip")
		}
	}
	b, err := fs.ReadFile(h.dist, send)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		ct = "application/octet-stream"
	}
	hdr.Set("Content-Type", ct)
	hdr.Set("Cache-Control", "no-cache")
	et, ok := h.etags.Load(send)
	if !ok {
		et, _ = h.etags.LoadOrStore(send, etagOf(b))
	}
	hdr.Set("ETag", et.(string))
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// etagOf is a strong ETag (RFC 9110 §8.8.3) for content.
func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// acceptsGzip reports whether Accept-Encoding values (RFC 9110 §12.5.3) allow
// gzip: listed (or "*") without q=0.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(item), ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" && coding != "*" {
				continue
			}
			q := 1.0
			for _, p := range strings.Split(params, ";") {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(strings.TrimSpace(k), "q") {
					if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						q = f
					}
				}
			}
			if q > 0 {
				return true
			}
		}
	}
	return false
}
