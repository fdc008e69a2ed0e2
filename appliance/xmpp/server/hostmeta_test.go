package server_test

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
)

// TestHostMeta: XEP-0156 §3 discovery in XRD and JRD, readable cross-origin.
func TestHostMeta(t *testing.T) {
	ws, bosh, err := server.WebTransportURLs("https://chat.example.test:5281")
	if err != nil {
		t.Fatal(err)
	}
	if ws != "wss://chat.example.test:5281/xmpp-websocket" || bosh != "https://chat.example.test:5281/http-bind" {
		t.Fatalf("URLs %q %q", ws, bosh)
	}
	if _, _, err := server.WebTransportURLs("http://chat.example.test"); err == nil {
		t.Fatal("an http:// public URL was accepted")
	}
	mux := http.NewServeMux()
	h := server.HostMetaHandler(ws, bosh)
	mux.Handle("GET /.well-known/host-meta", h)
	mux.Handle("GET /.well-known/host-meta.json", h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: %d %v", path, res.StatusCode, res.Header)
		}
		return res, body
	}
	want := map[string]string{server.RelWebSocket: ws, server.RelBOSH: bosh}

	res, body := get("/.well-known/host-meta")
	if ct := res.Header.Get("Content-Type"); ct != "application/xrd+xml; charset=utf-8" {
		t.Errorf("XRD content type %q", ct)
	}
	var xrd struct {
		XMLName xml.Name `xml:"http://docs.oasis-open.org/ns/xri/xrd-1.0 XRD"`
		Links   []struct {
			Rel  string `xml:"rel,attr"`
			Href string `xml:"href,attr"`
		} `xml:"Link"`
	}
	if err := xml.Unmarshal(body, &xrd); err != nil {
		t.Fatalf("XRD %s: %v", body, err)
	}
	got := map[string]string{}
	for _, l := range xrd.Links {
		got[l.Rel] = l.Href
	}
	if len(got) != 2 || got[server.RelWebSocket] != ws || got[server.RelBOSH] != bosh {
		t.Errorf("XRD links %v, want %v", got, want)
	}

	res, body = get("/.well-known/host-meta.json")
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("JRD content type %q", ct)
	}
	var jrd struct {
		Links []struct{ Rel, Href string } `json:"links"`
	}
	if err := json.Unmarshal(body, &jrd); err != nil {
		t.Fatalf("JRD %s: %v", body, err)
	}
	got = map[string]string{}
	for _, l := range jrd.Links {
		got[l.Rel] = l.Href
	}
	if len(got) != 2 || got[server.RelWebSocket] != ws || got[server.RelBOSH] != bosh {
		t.Errorf("JRD links %v, want %v", got, want)
	}
}
