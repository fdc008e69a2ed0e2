package server

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Paths of the web transports on the HTTPS server and the link relations
// that announce them (XEP-0156 §3, RFC 7395 §4, XEP-0206).
const (
	// WebSocketPath is where WebSocketHandler is mounted (RFC 7395).
	WebSocketPath = "/xmpp-websocket"
	// BOSHPath is where BOSHHandler is mounted (XEP-0206).
	BOSHPath = "/http-bind"

	// RelWebSocket is the XEP-0156 link relation of a WebSocket endpoint
	// (RFC 7395 §4).
	RelWebSocket = "urn:xmpp:alt-connections:websocket"
	// RelBOSH is the XEP-0156 link relation of a BOSH endpoint (XEP-0206).
	RelBOSH = "urn:xmpp:alt-connections:xbosh"
)

// WebTransportURLs derives the public WebSocket and BOSH endpoint URLs from
// the public base URL of the HTTPS server (for example
// "https://example.org:5281" gives "wss://example.org:5281/xmpp-websocket"
// and "https://example.org:5281/http-bind"; a path in base is kept as a
// prefix). base must be an absolute https URL without query or fragment.
func WebTransportURLs(base string) (websocketURL, boshURL string, err error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", "", fmt.Errorf("public URL %q: %w", base, err)
	}
	if u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("public URL %q: want https://host[:port][/path]", base)
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	ws := url.URL{Scheme: "wss", Host: u.Host, Path: prefix + WebSocketPath}
	bosh := url.URL{Scheme: "https", Host: u.Host, Path: prefix + BOSHPath}
	return ws.String(), bosh.String(), nil
}

// HostMetaHandler serves XEP-0156 §3 discovery of the web transports: the
// host-meta document (RFC 6415) as XRD at /.well-known/host-meta and as JRD
// (JSON) at /.well-known/host-meta.json, the format chosen by the request
// path's ".json" suffix. The links are urn:xmpp:alt-connections:websocket to
// websocketURL and urn:xmpp:alt-connections:xbosh to boshURL; an empty URL
// is left out. Responses carry Access-Control-Allow-Origin: * (XEP-0156 §3.2:
// web clients on other origins read them).
func HostMetaHandler(websocketURL, boshURL string) http.Handler {
	type link struct {
		Rel  string `json:"rel" xml:"rel,attr"`
		Href string `json:"href" xml:"href,attr"`
	}
	var links []link
	if boshURL != "" {
		links = append(links, link{Rel: RelBOSH, Href: boshURL})
	}
	if websocketURL != "" {
		links = append(links, link{Rel: RelWebSocket, Href: websocketURL})
	}
	jrd, err := json.Marshal(struct {
		Links []link `json:"links"`
	}{links})
	if err != nil {
		panic(err) // plain strings always marshal
	}
	xrd, err := xml.Marshal(struct {
		XMLName xml.Name `xml:"http://docs.oasis-open.org/ns/xri/xrd-1.0 XRD"`
		Links   []link   `xml:"Link"`
	}{Links: links})
	if err != nil {
		panic(err)
	}
	xrd = append([]byte(xml.Header), xrd...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Cache-Control", "max-age=3600")
		if strings.HasSuffix(r.URL.Path, ".json") {
			h.Set("Content-Type", "application/json")
			w.Write(jrd)
			return
		}
		h.Set("Content-Type", "application/xrd+xml; charset=utf-8")
		w.Write(xrd)
	})
}
