package upload

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
)

// ContentSecurityPolicy is sent with every download: an uploaded HTML or
// SVG file opened in a browser runs no script and loads nothing
// (CSP Level 3 'sandbox' without allow-scripts).
const ContentSecurityPolicy = "default-src 'none'; sandbox"

// allowedMethods are the methods of upload URLs (XEP-0363 §4: PUT once,
// GET many; HEAD and the CORS preflight for web clients).
const allowedMethods = "GET, HEAD, PUT, OPTIONS"

// ServeHTTP serves upload URLs (BASE/upload/TOKEN/NAME; the token is the
// path's "token" value, NAME is only for people and is not checked):
//
//   - PUT (XEP-0363 §4, once): 201 Created when the body was stored. 404
//     for an unknown slot, 410 Gone for an expired one, 409 Conflict when it
//     was used or a PUT for it is in progress, 411 without Content-Length,
//     413 when Content-Length is above and 400 when it is below the slot's
//     size (nothing is read then), 415 for a Content-Type that differs from
//     the requested one, 400 when the body ends early (nothing is kept).
//   - GET and HEAD: the file with its Content-Type, Content-Disposition
//     inline with the file name, an ETag, Last-Modified, Cache-Control,
//     [ContentSecurityPolicy] and nosniff; ranges and conditional requests
//     (http.ServeContent). 404 for unknown, unfinished or expired uploads.
//   - OPTIONS: the CORS preflight (204).
//
// Every answer allows any origin (CORS). Without TLS, PUT and GET are
// refused with 403 unless AllowPlainHTTP was set. Other methods get 405.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("X-Content-Type-Options", "nosniff")
	switch r.Method {
	case http.MethodOptions:
		h.Set("Allow", allowedMethods)
		h.Set("Access-Control-Allow-Methods", allowedMethods)
		h.Set("Access-Control-Allow-Headers", "Content-Type, Range")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodGet, http.MethodHead, http.MethodPut:
	default:
		h.Set("Allow", allowedMethods)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.TLS == nil && !s.plain {
		http.Error(w, "uploads need HTTPS", http.StatusForbidden)
		return
	}
	token := r.PathValue("token")
	if !validToken(token) {
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodPut {
		s.put(w, r, digest(token))
	} else {
		s.get(w, r, digest(token))
	}
}

// begin registers a PUT for id; it returns an HTTP status when the slot is
// busy (409) or being removed (410).
func (s *Service) begin(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.active[id]:
		return http.StatusConflict
	case s.deleting[id]:
		return http.StatusGone
	}
	s.active[id] = true
	return 0
}

func (s *Service) end(id string) {
	s.mu.Lock()
	delete(s.active, id)
	s.mu.Unlock()
}

func (s *Service) put(w http.ResponseWriter, r *http.Request, id string) {
	if code := s.begin(id); code != 0 {
		http.Error(w, http.StatusText(code), code)
		return
	}
	defer s.end(id)
	ctx := r.Context()
	u, err := s.st.GetUpload(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		http.NotFound(w, r)
		return
	case err != nil:
		s.srv.Logger().Error("upload: reading a slot failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case !u.Uploaded.IsZero():
		http.Error(w, "this slot was already used", http.StatusConflict)
		return
	case !s.srv.Now().Before(u.Created.Add(s.slotTTL)):
		http.Error(w, "this slot has expired", http.StatusGone)
		return
	case r.ContentLength < 0:
		http.Error(w, "Content-Length is required", http.StatusLengthRequired)
		return
	case r.ContentLength > u.Size:
		http.Error(w, "Content-Length is larger than the slot's size "+strconv.FormatInt(u.Size, 10), http.StatusRequestEntityTooLarge)
		return
	case r.ContentLength < u.Size:
		http.Error(w, "Content-Length is smaller than the slot's size "+strconv.FormatInt(u.Size, 10), http.StatusBadRequest)
		return
	}
	ct := ""
	if raw := r.Header.Get("Content-Type"); raw != "" {
		ct, err = NormalizeContentType(raw)
		if err != nil || (u.ContentType != "" && !strings.EqualFold(mediaType(ct), mediaType(u.ContentType))) {
			http.Error(w, "Content-Type does not match the slot's", http.StatusUnsupportedMediaType)
			return
		}
	}
	if u.ContentType != "" {
		ct = "" // keep the requested one
	}

	tmp, err := os.CreateTemp(tmpDir(s.dir), id+"-*")
	if err != nil {
		s.srv.Logger().Error("upload: creating a file failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	body := &idleReader{r: r.Body, rc: http.NewResponseController(w), idle: s.idle}
	n, err := io.Copy(tmp, body)
	if err != nil || n != u.Size {
		s.srv.Logger().Info("upload: PUT body incomplete", "user", u.Username, "got", n, "want", u.Size, "err", err)
		http.Error(w, "the body ended before the slot's size", http.StatusBadRequest)
		return
	}
	final := filePath(s.dir, id)
	if err := tmp.Sync(); err != nil {
		s.fail(w, "syncing", err)
		return
	}
	if err := tmp.Close(); err != nil {
		s.fail(w, "closing", err)
		return
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		s.fail(w, "renaming", err)
		return
	}
	ok = true
	syncDir(filesDir(s.dir))
	if err := s.st.FinishUpload(ctx, id, s.srv.Now(), ct); err != nil {
		os.Remove(final)
		if errors.Is(err, store.ErrNotFound) {
			http.Error(w, "this slot was removed", http.StatusGone)
			return
		}
		s.fail(w, "recording", err)
		return
	}
	s.srv.Logger().Info("upload: file stored", "user", u.Username, "size", u.Size)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (s *Service) fail(w http.ResponseWriter, what string, err error) {
	s.srv.Logger().Error("upload: "+what+" an upload failed", "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func (s *Service) get(w http.ResponseWriter, r *http.Request, id string) {
	u, err := s.st.GetUpload(r.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.srv.Logger().Error("upload: reading an upload failed", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	now := s.srv.Now()
	if err != nil || u.Uploaded.IsZero() || (s.retention > 0 && !now.Before(u.Uploaded.Add(s.retention))) {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filePath(s.dir, id))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.srv.Logger().Error("upload: opening a file failed", "err", err)
		}
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	h := w.Header()
	ct := u.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	cd := mime.FormatMediaType("inline", map[string]string{"filename": u.Filename})
	if cd == "" {
		cd = "inline"
	}
	h.Set("Content-Disposition", cd)
	h.Set("ETag", `"`+id[:32]+`"`)
	maxAge := int64(365 * 24 * time.Hour / time.Second)
	if s.retention > 0 {
		maxAge = min(maxAge, int64(u.Uploaded.Add(s.retention).Sub(now)/time.Second))
	}
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(maxAge, 10)+", immutable")
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, Content-Disposition, ETag, Accept-Ranges")
	http.ServeContent(w, r, "", u.Uploaded, f)
}

// idleReader moves the connection's read deadline forward before each
// read, so a PUT whose body stalls for idle ends instead of holding its slot.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleReader) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle)) // unsupported writers: no deadline
	return b.r.Read(p)
}

// syncDir makes a rename in dir durable (best effort: some file systems
// cannot sync directories).
func syncDir(dir string) {
	if d, err := os.Open(filepath.Clean(dir)); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
