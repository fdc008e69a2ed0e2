// Package certs obtains and renews Hearth's TLS certificate from an ACME CA
// (RFC 8555; Let's Encrypt by default) and serves it to every TLS listener
// through GetCertificate, hot-swapped on renewal, with the self-signed
// certificate (package tlsutil) in its place until the first one arrives.
//
// One certificate covers the domain and its component subdomains (groups.,
// upload., proxy., ...). certmagic (github.com/caddyserver/certmagic) manages
// one certificate per name, so the Manager keeps the certificate itself and
// uses certmagic for the ACME side: the account, the order through acmez,
// the DNS-01 solver on a libdns provider (RFC 8555 §8.4) and the HTTP-01
// responder (§8.3), and its FileStorage under DATA/acme.
package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/libdns/libdns"
)

// ACME directory URLs.
const (
	// LetsEncrypt is Let's Encrypt's production directory, the default CA.
	LetsEncrypt = certmagic.LetsEncryptProductionCA
	// LetsEncryptStaging is Let's Encrypt's staging directory: real
	// validation, untrusted certificates, generous rate limits.
	LetsEncryptStaging = certmagic.LetsEncryptStagingCA
)

// Challenge types (RFC 8555 §8).
const (
	// ChallengeDNS01 proves control with a TXT record at _acme-challenge.NAME,
	// set through Config.DNSProvider (§8.4).
	ChallengeDNS01 = "dns-01"
	// ChallengeHTTP01 answers the CA on port 80 at
	// /.well-known/acme-challenge/TOKEN (§8.3) through HTTPHandler.
	ChallengeHTTP01 = "http-01"
)

// Defaults for Config.
const (
	DefaultRenewalRatio  = 1.0 / 3
	DefaultCheckInterval = time.Hour
	DefaultRetryMin      = 2 * time.Minute
	DefaultRetryMax      = 6 * time.Hour
)

// DNSProvider sets and removes the DNS-01 TXT records: the libdns append and
// delete interfaces (ddns.Provider satisfies it).
type DNSProvider interface {
	libdns.RecordAppender
	libdns.RecordDeleter
}

// Config configures a Manager.
type Config struct {
	// Names are the DNS names the certificate covers, the XMPP domain first
	// (e.g. "example.org", "groups.example.org", "upload.example.org").
	// Required.
	Names []string
	// DataDir is Hearth's data directory; the ACME account, the certificate
	// and its key live under DataDir/acme. Required.
	DataDir string
	// CA is the ACME directory URL; "" uses LetsEncrypt.
	CA string
	// CARoots, if set, are the roots trusted for the CA's HTTPS API (a
	// private CA, or Pebble in tests); nil uses the system's.
	CARoots *x509.CertPool
	// Email is the ACME account contact (optional; the CA's expiry mails).
	Email string
	// Challenge is ChallengeDNS01 or ChallengeHTTP01 (default).
	Challenge string
	// DNSProvider sets the TXT records for ChallengeDNS01.
	DNSProvider DNSProvider
	// DNSResolvers ("host:port") are used by DNS-01 to find the zone and to
	// wait until the TXT record is visible; empty uses the system's
	// resolvers and then the zone's authoritative servers.
	DNSResolvers []string
	// HTTPListen is the "host:port" of the plain HTTP listener that mounts
	// HTTPHandler (ChallengeHTTP01). certmagic would otherwise try to open
	// port 80 itself; pointing it at our own bound listener prevents that.
	HTTPListen string
	// Fallback is served until an ACME certificate is available (the
	// self-signed one). Required.
	Fallback *tls.Certificate
	// RenewalRatio is the fraction of the lifetime left when renewal starts;
	// 0 uses DefaultRenewalRatio (renew with a third left, e.g. 30 of 90 days).
	RenewalRatio float64
	// CheckInterval is how often the certificate is checked; 0 uses
	// DefaultCheckInterval.
	CheckInterval time.Duration
	// RetryMin and RetryMax bound the exponential backoff after a failed
	// attempt; 0 uses DefaultRetryMin / DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// Logger receives one line per attempt and its outcome; nil uses
	// slog.Default(). certmagic's own logs go to it at debug level.
	Logger *slog.Logger
	// Now is the clock used for renewal decisions; nil uses time.Now.
	Now func() time.Time
}

// Status is the certificate state for the setup wizard and admin pages.
type Status struct {
	// CA is the ACME directory URL in use.
	CA string `json:"ca"`
	// Challenge is the challenge type in use.
	Challenge string `json:"challenge"`
	// Names are the names requested.
	Names []string `json:"names"`
	// SelfSigned is true while the fallback certificate is served.
	SelfSigned bool `json:"self_signed"`
	// Issuer is the served certificate's issuer common name.
	Issuer string `json:"issuer"`
	// CertNames are the served certificate's DNS names.
	CertNames []string `json:"cert_names"`
	// NotBefore and NotAfter bound the served certificate's validity.
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// RenewAt is when renewal starts (zero while self-signed).
	RenewAt time.Time `json:"renew_at"`
	// LastAttempt and LastSuccess are the last issuance attempt and success.
	LastAttempt time.Time `json:"last_attempt"`
	LastSuccess time.Time `json:"last_success"`
	// LastError is the last failed attempt's reason, with the CA's problem
	// document when there is one (RFC 8555 §6.7); "" after a success.
	LastError string `json:"last_error,omitempty"`
	// NextAttempt is when the next check or retry runs.
	NextAttempt time.Time `json:"next_attempt"`
}

// Manager holds the served certificate and renews it.
type Manager struct {
	cfg     Config
	names   []string
	log     *slog.Logger
	storage *certmagic.FileStorage
	cache   *certmagic.Cache
	issuer  *certmagic.ACMEIssuer

	cur atomic.Pointer[tls.Certificate] // ACME certificate, nil until one exists

	obtainMu sync.Mutex // one issuance at a time

	mu       sync.Mutex
	status   Status
	servedCA string // directory URL the served ACME certificate came from
}

// storedMeta is kept next to the certificate.
type storedMeta struct {
	CA    string   `json:"ca"`
	Names []string `json:"names"`
}

// New validates cfg, loads a previously obtained certificate from
// DataDir/acme (served at once if it still covers Names and is valid), and
// returns the Manager. Run obtains and renews. Errors: missing fields, an
// unknown challenge, DNS-01 without a provider.
func New(cfg Config) (*Manager, error) {
	if len(cfg.Names) == 0 || cfg.DataDir == "" || cfg.Fallback == nil {
		return nil, errors.New("certs: Names, DataDir and Fallback are required")
	}
	var names []string
	for _, n := range cfg.Names {
		n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if cfg.CA == "" {
		cfg.CA = LetsEncrypt
	}
	if cfg.Challenge == "" {
		cfg.Challenge = ChallengeHTTP01
	}
	switch cfg.Challenge {
	case ChallengeDNS01:
		if cfg.DNSProvider == nil {
			return nil, errors.New("certs: the dns-01 challenge needs a DNS provider")
		}
	case ChallengeHTTP01:
	default:
		return nil, fmt.Errorf("certs: unknown challenge %q (dns-01 or http-01)", cfg.Challenge)
	}
	if cfg.RenewalRatio <= 0 || cfg.RenewalRatio >= 1 {
		cfg.RenewalRatio = DefaultRenewalRatio
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{
		cfg:     cfg,
		names:   names,
		log:     log,
		storage: &certmagic.FileStorage{Path: filepath.Join(cfg.DataDir, "acme")},
	}
	m.status = Status{CA: cfg.CA, Challenge: cfg.Challenge, Names: names}
	zl := newZapLogger(log)

	// certmagic's ACMEIssuer needs a Config for its storage; the cache
	// behind it stays empty (we keep the certificate) and is stopped by
	// Close.
	var cmcfg *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cmcfg, nil },
		Logger:           zl,
	})
	cmcfg = certmagic.New(m.cache, certmagic.Config{Storage: m.storage, Logger: zl})
	tmpl := certmagic.ACMEIssuer{
		CA:                      cfg.CA,
		TestCA:                  cfg.CA, // never switch to another CA on retries
		Email:                   cfg.Email,
		Agreed:                  true,
		TrustedRoots:            cfg.CARoots,
		DisableTLSALPNChallenge: true,
		Logger:                  zl,
	}
	if cfg.Challenge == ChallengeDNS01 {
		tmpl.DisableHTTPChallenge = true
		tmpl.DNS01Solver = &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
			DNSProvider: cfg.DNSProvider,
			Resolvers:   cfg.DNSResolvers,
			Logger:      zl,
		}}
	} else if cfg.HTTPListen != "" {
		host, port, err := net.SplitHostPort(cfg.HTTPListen)
		if err != nil {
			return nil, fmt.Errorf("certs: HTTPListen: %w", err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("certs: HTTPListen: %w", err)
		}
		tmpl.ListenHost, tmpl.AltHTTPPort = host, p
	}
	m.issuer = certmagic.NewACMEIssuer(cmcfg, tmpl)
	cmcfg.Issuers = []certmagic.Issuer{m.issuer}

	if err := m.loadStored(context.Background()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("certs: the stored certificate is unusable; a new one will be requested", "err", err)
	}
	m.refreshStatus()
	return m, nil
}

// Close stops certmagic's background cache maintenance. The Manager keeps
// serving its current certificate.
func (m *Manager) Close() { m.cache.Stop() }

// GetCertificate returns the certificate to present: the ACME certificate
// once there is one, otherwise the fallback. It suits tls.Config
// GetCertificate and never returns an error.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cur.Load(); c != nil {
		return c, nil
	}
	return m.cfg.Fallback, nil
}

// HTTPHandler answers ACME HTTP-01 requests (RFC 8555 §8.3) for challenges
// this Manager started; mount it at "/.well-known/acme-challenge/" on the
// plain HTTP listener. Other requests get 404.
func (m *Manager) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !m.issuer.HandleHTTPChallenge(w, r) {
			http.NotFound(w, r)
		}
	})
}

// Status returns a copy of the current state.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Names = slices.Clone(s.Names)
	s.CertNames = slices.Clone(s.CertNames)
	return s
}

// Run obtains a certificate when there is none (or it does not cover Names,
// or came from another CA), and renews it once RenewalRatio of its lifetime
// is left, checking every CheckInterval; failures are retried after
// RetryMin, doubling up to RetryMax. It returns ctx's error when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	var backoff time.Duration
	for {
		wait := m.cfg.CheckInterval
		if m.due() {
			if err := m.Obtain(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if backoff == 0 {
					backoff = m.cfg.RetryMin
				} else {
					backoff = min(2*backoff, m.cfg.RetryMax)
				}
				wait = backoff
			} else {
				backoff = 0
			}
		}
		next := m.cfg.Now().Add(wait)
		m.mu.Lock()
		m.status.NextAttempt = next
		m.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// due reports whether a certificate must be obtained now.
func (m *Manager) due() bool {
	c := m.cur.Load()
	if c == nil {
		return true
	}
	m.mu.Lock()
	sameCA := m.servedCA == m.cfg.CA
	m.mu.Unlock()
	if !sameCA || !covers(c.Leaf, m.names) {
		return true
	}
	return !m.cfg.Now().Before(m.renewAt(c.Leaf))
}

// renewAt is when renewal of leaf starts.
func (m *Manager) renewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotAfter.Add(-time.Duration(float64(life) * m.cfg.RenewalRatio))
}

// covers reports whether leaf's DNS names include all of names.
func covers(leaf *x509.Certificate, names []string) bool {
	for _, n := range names {
		if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	return true
}

// Obtain requests a new certificate for Names now (with a new key), stores
// it and starts serving it: connections made before keep their session,
// new handshakes get the new certificate. It returns the failure's reason
// (also kept in Status.LastError).
func (m *Manager) Obtain(ctx context.Context) error {
	m.obtainMu.Lock()
	defer m.obtainMu.Unlock()
	start := m.cfg.Now()
	m.mu.Lock()
	m.status.LastAttempt = start
	m.mu.Unlock()
	m.log.Info("certs: requesting a certificate", "names", m.names, "ca", m.cfg.CA, "challenge", m.cfg.Challenge)
	cert, err := m.obtain(ctx)
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.status.LastError = err.Error()
		m.log.Warn("certs: obtaining a certificate failed", "names", m.names, "err", err)
		return err
	}
	m.cur.Store(cert)
	m.servedCA = m.cfg.CA
	m.status.LastSuccess = now
	m.status.LastError = ""
	m.setCertStatusLocked(cert)
	m.log.Info("certs: certificate obtained", "names", cert.Leaf.DNSNames,
		"issuer", cert.Leaf.Issuer.CommonName, "not_after", cert.Leaf.NotAfter)
	return nil
}

func (m *Manager) obtain(ctx context.Context) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: m.names}, key)
	if err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, err
	}
	issued, err := m.issuer.Issue(ctx, csr)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	cert, err := tls.X509KeyPair(issued.Certificate, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate does not match our key: %w", err)
	}
	if !covers(cert.Leaf, m.names) {
		return nil, fmt.Errorf("the CA's certificate covers %v, not %v", cert.Leaf.DNSNames, m.names)
	}
	meta, err := json.Marshal(storedMeta{CA: m.cfg.CA, Names: m.names})
	if err != nil {
		return nil, err
	}
	// Key first: a certificate without its key would be unusable.
	for _, f := range []struct {
		name string
		data []byte
	}{{"key.pem", keyPEM}, {"cert.pem", issued.Certificate}, {"meta.json", meta}} {
		if err := m.storage.Store(ctx, m.storageKey(f.name), f.data); err != nil {
			return nil, fmt.Errorf("storing the certificate: %w", err)
		}
	}
	return &cert, nil
}

func (m *Manager) storageKey(file string) string {
	return "hearth/" + m.names[0] + "/" + file
}

// loadStored serves the stored certificate if it is usable: it parses, has
// not expired, and covers Names.
func (m *Manager) loadStored(ctx context.Context) error {
	certPEM, err := m.storage.Load(ctx, m.storageKey("cert.pem"))
	if err != nil {
		return err
	}
	keyPEM, err := m.storage.Load(ctx, m.storageKey("key.pem"))
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	if !m.cfg.Now().Before(cert.Leaf.NotAfter) {
		return fmt.Errorf("expired on %s", cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	if !covers(cert.Leaf, m.names) {
		return fmt.Errorf("covers %v, not %v", cert.Leaf.DNSNames, m.names)
	}
	var meta storedMeta
	if b, err := m.storage.Load(ctx, m.storageKey("meta.json")); err == nil {
		json.Unmarshal(b, &meta)
	}
	m.cur.Store(&cert)
	m.mu.Lock()
	m.servedCA = meta.CA // a different CA than configured makes Run obtain anew
	m.mu.Unlock()
	m.log.Info("certs: using the stored certificate", "names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter)
	return nil
}

// refreshStatus fills the certificate fields of Status from what is served.
func (m *Manager) refreshStatus() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.cur.Load(); c != nil {
		m.setCertStatusLocked(c)
		return
	}
	m.status.SelfSigned = true
	if leaf := m.cfg.Fallback.Leaf; leaf != nil {
		m.status.Issuer = leaf.Issuer.CommonName
		m.status.CertNames = leaf.DNSNames
		m.status.NotBefore, m.status.NotAfter = leaf.NotBefore, leaf.NotAfter
	}
}

func (m *Manager) setCertStatusLocked(c *tls.Certificate) {
	m.status.SelfSigned = false
	m.status.Issuer = c.Leaf.Issuer.CommonName
	m.status.CertNames = slices.Clone(c.Leaf.DNSNames)
	m.status.NotBefore, m.status.NotAfter = c.Leaf.NotBefore, c.Leaf.NotAfter
	m.status.RenewAt = m.renewAt(c.Leaf)
}
