// Package httpd is Hearth's own HTTP(S) server: one mux shared by every web
// feature (XEP-0363 upload slots, RFC 7395 WebSocket, XEP-0206 BOSH, XEP-0156
// host-meta, the web client at /chat, and the setup wizard and admin pages).
// Features register handlers with Handle before the listeners start.
package httpd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves one http.ServeMux on any number of HTTP and HTTPS listeners.
type Server struct {
	mux *http.ServeMux
	log *slog.Logger

	mu         sync.Mutex
	servers    []*http.Server
	onShutdown []func()
	closing    bool

	// base is every request's parent context: Shutdown cancels it once
	// its grace period is over, so that handlers still running (a long DNS
	// or reachability check) stop; active counts the running handlers.
	base       context.Context
	cancelBase context.CancelFunc
	active     atomic.Int64
}

// AbortGrace is how long Shutdown waits, after its own context ended, for
// the handlers whose request contexts it then cancelled.
const AbortGrace = 2 * time.Second

// New returns a Server with an empty mux; log receives request errors (nil
// uses slog.Default()).
func New(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	base, cancel := context.WithCancel(context.Background())
	return &Server{mux: http.NewServeMux(), log: log, base: base, cancelBase: cancel}
}

// Handle registers h for pattern, in net/http.ServeMux pattern syntax
// ("GET /chat/", "/xmpp-websocket"). It panics on a conflicting pattern, like
// ServeMux, since that is a programming error.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleFunc registers f for pattern, like Handle.
func (s *Server) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	s.mux.HandleFunc(pattern, f)
}

// Handler returns the complete handler: the mux behind the common response
// headers. Tests may serve it with httptest.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.active.Add(1)
		defer s.active.Add(-1)
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.TLS != nil {
			// RFC 6797: browsers keep to HTTPS for this host.
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		s.mux.ServeHTTP(w, r)
	})
}

// ListenTLS starts serving HTTPS on addr ("127.0.0.1:5281"; port 0 picks a
// free one) with cfg, which must hold a certificate or GetCertificate; TLS
// 1.2 is the minimum whatever cfg says. It returns the bound address, or the
// listen error.
func (s *Server) ListenTLS(addr string, cfg *tls.Config) (net.Addr, error) {
	cfg = cfg.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return s.serve(tls.NewListener(ln, cfg), ln.Addr(), cfg)
}

// Listen starts serving plain HTTP on addr (the LAN setup wizard at
// http://hearth.local, ACME HTTP-01). Handlers that need a secure channel
// check r.TLS themselves. It returns the bound address or the listen error.
func (s *Server) Listen(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return s.serve(ln, ln.Addr(), nil)
}

func (s *Server) serve(ln net.Listener, addr net.Addr, cfg *tls.Config) (net.Addr, error) {
	hs := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout/WriteTimeout: BOSH holds requests open, WebSocket
		// streams live for hours and downloads may be large. Idle keep-alive
		// connections are closed after IdleTimeout.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 32 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:    func(net.Listener) context.Context { return s.base },
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil, http.ErrServerClosed
	}
	s.servers = append(s.servers, hs)
	s.mu.Unlock()
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP listener stopped", "addr", addr.String(), "err", err)
		}
	}()
	return addr, nil
}

// RegisterOnShutdown registers f to run when Shutdown begins, for handlers
// that hold connections the HTTP server does not track (hijacked
// WebSocket connections, held BOSH requests).
func (s *Server) RegisterOnShutdown(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onShutdown = append(s.onShutdown, f)
}

// Shutdown stops every listener and waits for active requests until ctx
// ends; then it cancels the contexts of the requests still running and
// waits up to AbortGrace more for their handlers to return, so that
// nothing the caller closes next (the store) is used by a handler after
// Shutdown returned. It returns ctx's error if some were still running
// when ctx ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	servers, hooks := s.servers, s.onShutdown
	s.mu.Unlock()
	for _, f := range hooks {
		go f()
	}
	var firstErr error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	s.cancelBase()
	// Requests may still start on connections hs.Shutdown gave up on, so
	// the count is polled rather than waited for (bounded).
	for deadline := time.Now().Add(AbortGrace); s.active.Load() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			s.log.Warn("HTTP handlers still running after shutdown", "count", s.active.Load())
			break
		}
	}
	return firstErr
}
