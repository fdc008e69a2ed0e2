package httpd

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/tlsutil"
)

func TestServeHTTPAndHTTPS(t *testing.T) {
	cert, err := tlsutil.LoadOrCreateSelfSigned(filepath.Join(t.TempDir(), "tls"), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	s := New(nil)
	s.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+map[bool]string{true: "tls", false: "plain"}[r.TLS != nil])
	})
	shut := make(chan struct{})
	s.RegisterOnShutdown(func() { close(shut) })
	tlsAddr, err := s.ListenTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS10})
	if err != nil {
		t.Fatal(err)
	}
	plainAddr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	get := func(url string) (*http.Response, string) {
		t.Helper()
		res, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	res, body := get("https://" + tlsAddr.String() + "/hello")
	if body != "hello tls" || res.ProtoMajor != 2 || res.Header.Get("Strict-Transport-Security") == "" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("HTTPS: %s %q %v", res.Proto, body, res.Header)
	}
	res, body = get("http://" + plainAddr.String() + "/hello")
	if body != "hello plain" || res.Header.Get("Strict-Transport-Security") != "" {
		t.Errorf("HTTP: %q %v", body, res.Header)
	}
	if res, _ := get("http://" + plainAddr.String() + "/nothing"); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %d", res.StatusCode)
	}
	// TLS 1.1 is refused even though the config asked for 1.0.
	c, err := tls.Dial("tcp", tlsAddr.String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-shut:
	case <-time.After(5 * time.Second):
		t.Error("shutdown hook did not run")
	}
	if _, err := s.Listen("127.0.0.1:0"); err == nil {
		t.Error("Listen after Shutdown succeeded")
	}
}

// TestShutdownAbortsSlowHandlers: a handler still running when Shutdown's
// context ends sees its request context cancelled, and Shutdown returns
// only after it returned (the caller may then close what it used).
func TestShutdownAbortsSlowHandlers(t *testing.T) {
	s := New(nil)
	started := make(chan struct{})
	var finished atomic.Bool
	s.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
		time.Sleep(50 * time.Millisecond) // cleaning up after the cancellation
		finished.Store(true)
	})
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Get("http://" + addr.String() + "/slow")
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not arrive")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace: the handler is still running
	if err := s.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown reported no running request")
	}
	if !finished.Load() {
		t.Fatal("Shutdown returned while the handler was still running")
	}
}
