// Package upload implements XEP-0363 HTTP File Upload (urn:xmpp:http:upload:0)
// as a component at its own domain (upload.DOMAIN by default) with the HTTP
// side on Hearth's shared HTTPS server (package httpd).
//
// A local account asks the component for a slot (XEP-0363 §4) and gets a PUT
// URL and a GET URL, both the same: the base URL, "/upload/", a random token
// of 144 bits and the URL-escaped file name. No PUT headers are required;
// the unguessable token is the capability. The first PUT with exactly the
// announced size stores the file (streamed to a temporary file, synced,
// then renamed into place); afterwards anyone holding the URL may GET it
// (with HEAD, ranges and CORS for web clients) until the retention removes
// it. A slot that is not used within the slot timeout expires.
//
// Metadata lives in the store (table uploads: only the token's SHA-256
// digest, never the token); files live under the directory given to
// Register, in files/<digest>, and in tmp/ while they are being uploaded.
package upload

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hearthxmpp/hearth/appliance/httpd"
	"github.com/hearthxmpp/hearth/appliance/store"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
	"mellium.im/xmpp/jid"
)

// Namespaces.
const (
	// NS is the XEP-0363 namespace (XEP-0363 §2, §4).
	NS = "urn:xmpp:http:upload:0"
	// NSDiscoInfo is XEP-0030 disco#info.
	NSDiscoInfo = "http://jabber.org/protocol/disco#info"
	// NSDiscoItems is XEP-0030 disco#items.
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	// NSData is XEP-0004 data forms (the XEP-0128 form of XEP-0363 §2).
	NSData = "jabber:x:data"
)

// Defaults and fixed bounds.
const (
	// DefaultMaxFileSize is the largest file accepted by default, in bytes
	// (advertised as max-file-size, XEP-0363 §2).
	DefaultMaxFileSize = 100 << 20
	// DefaultDailyQuota is how many bytes one account may upload per
	// QuotaWindow by default.
	DefaultDailyQuota = 1 << 30
	// QuotaWindow is the sliding window of the per-account quota.
	QuotaWindow = 24 * time.Hour
	// DefaultRetention is how long uploaded files are kept by default.
	DefaultRetention = 30 * 24 * time.Hour
	// DefaultSlotTimeout is how long a slot waits for its PUT by default.
	DefaultSlotTimeout = 5 * time.Minute
	// DefaultPruneInterval is how often the retention job runs by default.
	DefaultPruneInterval = 15 * time.Minute
	// DefaultMinFreeDisk is the free space (bytes) the upload directory's
	// file system must keep after a new file, by default: the SQLite
	// database lives on the same SD card.
	DefaultMinFreeDisk = 256 << 20
	// DefaultIdleTimeout is how long a PUT body may stall before the
	// upload is abandoned.
	DefaultIdleTimeout = time.Minute
	// PathPrefix is the HTTP path of upload URLs, after the base URL's own
	// path: BASE/upload/TOKEN/NAME.
	PathPrefix = "/upload/"
	// MaxFilenameBytes bounds the requested file name (UTF-8 bytes).
	MaxFilenameBytes = 255
	// MaxContentTypeBytes bounds the requested content type.
	MaxContentTypeBytes = 255
	// tokenBytes random bytes make a token (144 bits, 24 base64url chars).
	tokenBytes = 18
)

// Option configures Register.
type Option func(*Service)

// Domain sets the component's domain; default "upload." + the served
// domain.
func Domain(d string) Option { return func(s *Service) { s.domain = d } }

// BaseURL sets the scheme, host, port and optional path prefix of the
// upload URLs ("https://example.org:5281"); default "https://" + served
// domain + ":5281". A reverse proxy in front of a base with a path must
// strip that path before passing requests to Hearth.
func BaseURL(u string) Option { return func(s *Service) { s.base = u } }

// MaxFileSize sets the largest file accepted, in bytes; n <= 0 keeps
// [DefaultMaxFileSize]. The advertised limit is the smallest of this, the
// daily quota and the storage cap.
func MaxFileSize(n int64) Option {
	return func(s *Service) {
		if n > 0 {
			s.maxFile = n
		}
	}
}

// DailyQuota sets how many bytes one account may upload per [QuotaWindow]
// (open slots count until they expire); n <= 0 means no quota. Default
// [DefaultDailyQuota].
func DailyQuota(n int64) Option { return func(s *Service) { s.quota = max(n, 0) } }

// StorageCap sets the most bytes all stored files (and open slots) may take
// together; n <= 0 means no cap (the default; the free-disk reserve still
// applies).
func StorageCap(n int64) Option { return func(s *Service) { s.cap = max(n, 0) } }

// MinFreeDisk sets the free space, in bytes, that must remain on the upload
// directory's file system after a new file; n <= 0 disables the check.
// Default [DefaultMinFreeDisk].
func MinFreeDisk(n int64) Option { return func(s *Service) { s.minFree = max(n, 0) } }

// Retention sets how long an uploaded file is kept after its upload; d <= 0
// keeps files forever. Default [DefaultRetention].
func Retention(d time.Duration) Option { return func(s *Service) { s.retention = max(d, 0) } }

// SlotTimeout sets how long a slot waits for its PUT to start; d <= 0 keeps
// [DefaultSlotTimeout].
func SlotTimeout(d time.Duration) Option {
	return func(s *Service) {
		if d > 0 {
			s.slotTTL = d
		}
	}
}

// PruneInterval sets how often the job started by [Service.Start] runs;
// d <= 0 keeps [DefaultPruneInterval].
func PruneInterval(d time.Duration) Option {
	return func(s *Service) {
		if d > 0 {
			s.interval = d
		}
	}
}

// AllowPlainHTTP lets PUT and GET work over plain HTTP (for development, or
// behind a reverse proxy that terminates TLS); by default they need TLS.
func AllowPlainHTTP(ok bool) Option { return func(s *Service) { s.plain = ok } }

// Service is the registered upload component. Its methods are safe for
// concurrent use.
type Service struct {
	srv       *server.Server
	st        *store.Store
	domain    string
	base      string // without trailing slash
	dir       string
	maxFile   int64
	quota     int64
	cap       int64
	minFree   int64
	retention time.Duration
	slotTTL   time.Duration
	interval  time.Duration
	idle      time.Duration
	plain     bool

	freeDisk func(dir string) (int64, error) // tests replace it
	tick     <-chan time.Time                // tests: replaces the ticker of Start

	mu       sync.Mutex
	active   map[string]bool // ids with a PUT in progress
	deleting map[string]bool // ids the retention job is removing
}

// Register serves HTTP File Upload: the component at its domain on srv
// (server.AddComponent), and the PUT/GET/HEAD/OPTIONS handlers on web under
// [PathPrefix] (web may be nil when the caller serves [Service.ServeHTTP]
// itself). Files are kept under dir (created, mode 0700). Call it before the
// first listener starts, and start the retention job with [Service.Start].
//
// The component answers, for IQs to its bare domain:
//   - disco#info (XEP-0030, XEP-0363 §2): identity store/file, features
//     disco#info, disco#items and urn:xmpp:http:upload:0, and the XEP-0128
//     form with max-file-size;
//   - disco#items: empty;
//   - get <request filename size content-type/> (XEP-0363 §4): a <slot/>
//     with put and get URLs. Only accounts of the served domain get slots
//     (others: not-allowed). A missing or bad filename (empty, over
//     [MaxFilenameBytes], control characters, '/' or '\', "." or ".."), a
//     size that is no positive integer or a content-type that is no MIME
//     type get bad-request; a file over the limit gets not-acceptable with
//     <file-too-large><max-file-size/></file-too-large> (§5); an exceeded
//     daily quota gets resource-constraint (type wait) with <retry stamp/>
//     for when enough of the window has passed (§5); a full storage cap or
//     disk gets resource-constraint.
//
// Anything else gets service-unavailable (messages and IQs to JIDs with a
// localpart too); presence is ignored. It fails for an invalid domain or
// base URL, or when dir cannot be created.
func Register(srv *server.Server, web *httpd.Server, dir string, opts ...Option) (*Service, error) {
	s := &Service{
		srv:       srv,
		st:        srv.Store(),
		domain:    "upload." + srv.Domain().Domainpart(),
		base:      "https://" + srv.Domain().Domainpart() + ":5281",
		dir:       dir,
		maxFile:   DefaultMaxFileSize,
		quota:     DefaultDailyQuota,
		minFree:   DefaultMinFreeDisk,
		retention: DefaultRetention,
		slotTTL:   DefaultSlotTimeout,
		interval:  DefaultPruneInterval,
		idle:      DefaultIdleTimeout,
		freeDisk:  freeDiskSpace,
		active:    make(map[string]bool),
		deleting:  make(map[string]bool),
	}
	for _, o := range opts {
		o(s)
	}
	u, err := url.Parse(s.base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("upload: base URL %q is not an absolute http(s) URL without query", s.base)
	}
	s.base = strings.TrimSuffix(s.base, "/")
	for _, d := range []string{filesDir(dir), tmpDir(dir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("upload: %w", err)
		}
	}
	if err := srv.AddComponent(s.domain, s); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	if web != nil {
		web.Handle(PathPrefix+"{token}/{name}", s)
	}
	return s, nil
}

// ComponentDomain returns the component's domain.
func (s *Service) ComponentDomain() string { return s.domain }

// MaxSize returns the advertised max-file-size in bytes: the smallest of
// the file size limit, the daily quota and the storage cap.
func (s *Service) MaxSize() int64 {
	n := s.maxFile
	if s.quota > 0 {
		n = min(n, s.quota)
	}
	if s.cap > 0 {
		n = min(n, s.cap)
	}
	return n
}

func filesDir(dir string) string { return filepath.Join(dir, "files") }
func tmpDir(dir string) string   { return filepath.Join(dir, "tmp") }

// filePath is where the file of upload id is stored.
func filePath(dir, id string) string { return filepath.Join(filesDir(dir), id) }

// digest is the store id of a URL token: hex SHA-256.
func digest(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// validToken reports whether tok has the shape of a token this package
// hands out, so other paths are refused without a store lookup.
func validToken(tok string) bool {
	if len(tok) != base64.RawURLEncoding.EncodedLen(tokenBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(tok)
	return err == nil
}

// HandleStanza implements server.Component.
func (s *Service) HandleStanza(ctx context.Context, st *xmlel.Element, from, to jid.JID) {
	switch st.Name.Local {
	case "iq":
		typ := st.Get("type")
		if typ != "get" && typ != "set" {
			return // results and errors: the component sends no requests
		}
		payload, err := s.handleIQ(ctx, st, typ, from, to)
		if err != nil {
			var se *server.StanzaError
			if !errors.As(err, &se) {
				s.srv.Logger().Error("upload: request failed", "from", from.String(), "err", err)
				se = server.ErrInternal
			}
			s.srv.Route(ctx, server.ErrorReply(st, se))
			return
		}
		res := xmlel.New(server.NSClient, "iq", "type", "result", "id", st.Get("id"), "from", st.Get("to"), "to", from.String())
		if payload != nil {
			res.Add(payload)
		}
		s.srv.Route(ctx, res)
	case "message":
		if st.Get("type") != "error" {
			s.srv.Route(ctx, server.ErrorReply(st, server.ErrServiceUnavailable))
		}
	}
}

func (s *Service) handleIQ(ctx context.Context, st *xmlel.Element, typ string, from, to jid.JID) (*xmlel.Element, error) {
	p := st.FirstElement()
	if p == nil {
		return nil, server.ErrBadRequest
	}
	if to.Localpart() != "" || typ != "get" {
		return nil, server.ErrServiceUnavailable
	}
	switch {
	case p.Name.Space == NSDiscoInfo && p.Name.Local == "query":
		if p.Get("node") != "" {
			return nil, server.ErrItemNotFound
		}
		return s.discoInfo(), nil
	case p.Name.Space == NSDiscoItems && p.Name.Local == "query":
		if p.Get("node") != "" {
			return nil, server.ErrItemNotFound
		}
		return xmlel.New(NSDiscoItems, "query"), nil
	case p.Name.Space == NS && p.Name.Local == "request":
		return s.slot(ctx, p, from)
	}
	return nil, server.ErrServiceUnavailable
}

// discoInfo is the component's disco#info result (XEP-0363 §2).
func (s *Service) discoInfo() *xmlel.Element {
	q := xmlel.New(NSDiscoInfo, "query")
	q.Add(xmlel.New(NSDiscoInfo, "identity", "category", "store", "type", "file", "name", "HTTP File Upload"))
	for _, f := range []string{NSDiscoInfo, NSDiscoItems, NS} {
		q.Add(xmlel.New(NSDiscoInfo, "feature", "var", f))
	}
	q.Add(xmlel.New(NSData, "x", "type", "result").Add(
		xmlel.New(NSData, "field", "var", "FORM_TYPE", "type", "hidden").Add(xmlel.New(NSData, "value").AddText(NS)),
		xmlel.New(NSData, "field", "var", "max-file-size").Add(xmlel.New(NSData, "value").AddText(strconv.FormatInt(s.MaxSize(), 10))),
	))
	return q
}

// ValidFilename reports whether name is acceptable as a requested file name:
// non-empty valid UTF-8 of at most [MaxFilenameBytes] bytes, without
// control characters, '/' or '\', and not "." or "..".
func ValidFilename(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > MaxFilenameBytes || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r == '/' || r == '\\' || unicode.IsControl(r) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// NormalizeContentType returns ct as a normalised MIME type with its
// parameters (RFC 2045: "type/subtype; param=value", lower-cased type), or
// an error if it is none or longer than [MaxContentTypeBytes].
func NormalizeContentType(ct string) (string, error) {
	if len(ct) > MaxContentTypeBytes {
		return "", errors.New("content type too long")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", err
	}
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || typ == "" || sub == "" || strings.Contains(sub, "/") {
		return "", fmt.Errorf("%q is no type/subtype", mt)
	}
	out := mime.FormatMediaType(mt, params)
	if out == "" {
		return "", fmt.Errorf("%q cannot be formatted", ct)
	}
	return out, nil
}

// mediaType is the type/subtype of a normalised content type.
func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.TrimSpace(mt)
}

// slot answers a slot request (XEP-0363 §4, §5).
func (s *Service) slot(ctx context.Context, req *xmlel.Element, from jid.JID) (*xmlel.Element, error) {
	if !s.srv.IsLocal(from) || from.Localpart() == "" {
		return nil, server.Errorf(server.ErrNotAllowed, "Only accounts of "+s.srv.Domain().Domainpart()+" may upload files here")
	}
	user := from.Localpart()
	name := req.Get("filename")
	if !ValidFilename(name) {
		return nil, server.Errorf(server.ErrBadRequest, "The filename is missing or not acceptable")
	}
	size, err := strconv.ParseInt(req.Get("size"), 10, 64)
	if err != nil || size <= 0 {
		return nil, server.Errorf(server.ErrBadRequest, "The size must be a positive number of bytes")
	}
	ct := ""
	if raw := req.Get("content-type"); raw != "" {
		if ct, err = NormalizeContentType(raw); err != nil {
			return nil, server.Errorf(server.ErrBadRequest, "The content-type is not a MIME type")
		}
	}
	if limit := s.MaxSize(); size > limit {
		e := server.Errorf(server.ErrNotAcceptable, fmt.Sprintf("File too large. The maximum file size is %d bytes", limit))
		e.App = xmlel.New(NS, "file-too-large").Add(xmlel.New(NS, "max-file-size").AddText(strconv.FormatInt(limit, 10)))
		return nil, e
	}
	if s.minFree > 0 {
		if free, err := s.freeDisk(s.dir); err == nil && free-size < s.minFree {
			s.srv.Logger().Warn("upload: refusing a slot, the disk is almost full", "free", free, "size", size)
			return nil, server.Errorf(server.ErrResourceConstraint, "The server's disk is full. Try again later")
		}
	}

	var raw [tokenBytes]byte
	rand.Read(raw[:])
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	now := s.srv.Now()
	u := store.Upload{ID: digest(token), Username: user, Filename: name, Size: size, ContentType: ct, Created: now}
	err = s.st.CreateUpload(ctx, u, now.Add(-QuotaWindow), now.Add(-s.slotTTL), func(total int64, recent []store.Upload) error {
		if s.cap > 0 && total+size > s.cap {
			s.srv.Logger().Warn("upload: storage cap reached", "used", total, "cap", s.cap)
			return server.Errorf(server.ErrResourceConstraint, "The upload storage of this server is full. Try again later")
		}
		if s.quota <= 0 {
			return nil
		}
		var used int64
		for _, r := range recent {
			used += r.Size
		}
		if used+size <= s.quota {
			return nil
		}
		// The upload fits again once enough of the oldest counted uploads
		// have left the window.
		var retry time.Time
		freed := used + size - s.quota
		for _, r := range recent {
			freed -= r.Size
			if freed <= 0 {
				retry = r.Created.Add(QuotaWindow)
				break
			}
		}
		e := server.Errorf(server.ErrResourceConstraint, fmt.Sprintf("Quota reached. You can upload %d bytes in %v; %d of them are used",
			s.quota, QuotaWindow, used))
		if !retry.IsZero() {
			e.App = xmlel.New(NS, "retry", "stamp", retry.UTC().Format(time.RFC3339))
		}
		return e
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, server.Errorf(server.ErrNotAllowed, "No such account")
	} else if err != nil {
		return nil, err
	}
	link := s.base + PathPrefix + token + "/" + url.PathEscape(name)
	return xmlel.New(NS, "slot").Add(
		xmlel.New(NS, "put", "url", link),
		xmlel.New(NS, "get", "url", link),
	), nil
}
