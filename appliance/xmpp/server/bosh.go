package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmlel"
)

// BOSHOptions tunes the BOSH endpoint; zero fields take the defaults.
type BOSHOptions struct {
	// Inactivity is how long a session may go without a pending request
	// before it ends as if its connection was lost (XEP-0124 §10, the
	// 'inactivity' attribute, whole seconds). Default 60 s.
	Inactivity time.Duration
	// MaxWait caps how long a request is held for output (XEP-0124 §7.1,
	// the 'wait' attribute, whole seconds). Default 60 s.
	MaxWait time.Duration
}

const (
	// boshVersion is the XEP-0124 version implemented (the 'ver' attribute).
	boshVersion = "1.11"
	// boshPolling is the shortest polling interval announced, in seconds
	// (XEP-0124 §12; not enforced).
	boshPolling = 2
	// boshMaxRID is the largest request id a client may use (XEP-0124 §14.1).
	boshMaxRID = 1<<53 - 1
	// boshContentType is the default Content-Type of responses (XEP-0124 §7.1).
	boshContentType = "text/xml; charset=utf-8"
)

// BOSHHandler returns the XEP-0124 / XEP-0206 endpoint (XMPP over BOSH), to
// be mounted at /http-bind on the HTTPS server. A BOSH session carries one
// client stream that runs the same c2s code as a TCP connection (limits,
// SASL and SASL2 with SCRAM, resource binding, the same router sessions);
// the HTTPS connections under it are not one TLS channel, so no -PLUS
// mechanism or FAST token binding is offered. Session creation answers
// with sid, wait, inactivity, polling, requests (hold+1), hold (at most 1),
// ver, authid and xmpp:version='1.0'; after SASL the client restarts the
// stream with xmpp:restart='true'. Requests are forwarded and answered in
// 'rid' order within a window of 'requests'; a repeated rid gets the same
// response again (the last 'requests' responses are kept, fewer when the
// client acknowledges them); a rid outside the window, an unknown sid or a
// response no longer kept is the terminal condition item-not-found, a
// malformed <body/> bad-request, too many simultaneous requests or a body
// larger than twice Limits.MaxStanzaBytes policy-violation. Requests are held
// until output arrives or 'wait' passes, and answered only once the c2s
// reader took their payload (so a fast sender is paced like on TCP). A
// stream error ends the session with condition remote-stream-error and the
// <stream:error/> in the body (XEP-0206 §5). Without a request for
// 'inactivity' the session ends like a lost connection (a stream-managed
// session hibernates). Output waiting for the client is bounded by
// Limits.SendQueueBytes. Responses carry Access-Control-Allow-Origin: * and
// OPTIONS preflights are answered, for web clients on other origins; plain
// HTTP is refused with 403.
func (s *Server) BOSHHandler(opts BOSHOptions) http.Handler {
	if opts.Inactivity <= 0 {
		opts.Inactivity = 60 * time.Second
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 60 * time.Second
	}
	return &boshHandler{srv: s, opts: opts}
}

type boshHandler struct {
	srv  *Server
	opts BOSHOptions
}

// boshBody is a parsed request <body/> (XEP-0124 §6).
type boshBody struct {
	sid, to, lang, ver, content, typ string
	rid                              uint64
	hasRID                           bool
	wait, hold                       int // -1 when absent
	ack                              uint64
	hasAck                           bool
	restart                          bool
	payload                          []byte // the children, serialized for a jabber:client stream
}

var errBadBody = errors.New("bosh: malformed request body")

// parseBOSHBody decodes a request body. Children qualified by the httpbind
// namespace (clients that rely on the wrapper's default namespace, XEP-0206
// §2) are taken as jabber:client.
func parseBOSHBody(data []byte) (*boshBody, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	var start xml.StartElement
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, errBadBody
		}
		if t, ok := tok.(xml.StartElement); ok {
			start = t
			break
		}
		if t, ok := tok.(xml.CharData); ok && len(bytes.TrimSpace(t)) > 0 {
			return nil, errBadBody
		}
	}
	if start.Name.Space != NSHTTPBind || start.Name.Local != "body" {
		return nil, errBadBody
	}
	b := &boshBody{wait: -1, hold: -1}
	for _, a := range start.Attr {
		var err error
		switch {
		case a.Name.Space == NSXBOSH && a.Name.Local == "restart":
			b.restart = a.Value == "true" || a.Value == "1"
		case a.Name.Local == "lang" && a.Name.Space == xmlel.NSXML:
			b.lang = a.Value
		case a.Name.Space != "":
		case a.Name.Local == "sid":
			b.sid = a.Value
		case a.Name.Local == "rid":
			b.rid, err = strconv.ParseUint(a.Value, 10, 64)
			b.hasRID = err == nil && b.rid > 0 && b.rid <= boshMaxRID
		case a.Name.Local == "to":
			b.to = a.Value
		case a.Name.Local == "ver":
			b.ver = a.Value
		case a.Name.Local == "content":
			b.content = a.Value
		case a.Name.Local == "type":
			b.typ = a.Value
		case a.Name.Local == "wait":
			b.wait, err = strconv.Atoi(a.Value)
		case a.Name.Local == "hold":
			b.hold, err = strconv.Atoi(a.Value)
		case a.Name.Local == "ack":
			b.ack, err = strconv.ParseUint(a.Value, 10, 64)
			b.hasAck = err == nil
		}
		if err != nil {
			return nil, errBadBody
		}
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, errBadBody
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el, err := xmlel.Decode(d, t)
			if err != nil {
				return nil, errBadBody
			}
			httpbindToClient(el)
			b.payload = el.Append(b.payload, NSClient)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, errBadBody // XEP-0124 §6: no character data in the wrapper
			}
		case xml.EndElement:
			return b, nil
		default:
			return nil, errBadBody // comments, processing instructions, DTDs (XEP-0124 §6)
		}
	}
}

// httpbindToClient requalifies elements in the httpbind namespace as
// jabber:client.
func httpbindToClient(el *xmlel.Element) {
	if el.Name.Space == NSHTTPBind {
		el.Name.Space = NSClient
	}
	for _, c := range el.Elements() {
		httpbindToClient(c)
	}
}

// boshReq is one request of a session that waits for its response.
type boshReq struct {
	rid       uint64
	end       int64 // the inbox offset after its payload: answerable once consumed
	create    bool
	terminate bool
	expired   bool        // 'wait' passed
	timer     *time.Timer // the 'wait' timer
	waiter    chan []byte // receives the response body; nil body: superseded by a retransmission
	payload   []byte      // while early: what to forward once the gap before it fills
}

type boshCached struct {
	rid  uint64
	body []byte
}

// boshSession is one BOSH session (XEP-0124) and the c2s stream it carries.
type boshSession struct {
	srv      *Server
	sid      string
	in       *inbox
	conn     *webConn
	wait     time.Duration
	hold     int
	requests int
	inactive time.Duration
	ver      string
	content  string
	to, lang string
	maxOut   int

	mu        sync.Mutex
	hi        uint64 // highest rid received with every lower one received
	early     map[uint64]*boshReq
	held      []*boshReq // accepted, unanswered, in rid order
	cache     []boshCached
	out       []byte // elements for the client, serialized
	outStream bool   // out holds a <stream:*/> element
	outError  bool   // out holds a <stream:error/>
	header    *streamHeader
	authid    string
	ended     bool   // the stream is over: every answer terminates the session
	endCond   string // the terminal condition, "" for a plain terminate
	removed   bool   // no longer in the sid table
	drained   chan struct{}
	idle      *time.Timer
}

func (h *boshHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodOptions:
		hdr.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", "Content-Type")
		hdr.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPost:
	default:
		hdr.Set("Allow", "POST, OPTIONS")
		http.Error(w, "XMPP over BOSH (XEP-0206): POST a <body/> here", http.StatusMethodNotAllowed)
		return
	}
	if r.TLS == nil {
		http.Error(w, "XMPP over BOSH needs HTTPS", http.StatusForbidden)
		return
	}
	s := h.srv
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(2*s.limits.MaxStanzaBytes)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeBOSH(w, boshContentType, boshTerminal("policy-violation"))
		}
		return
	}
	b, err := parseBOSHBody(data)
	if err != nil {
		writeBOSH(w, boshContentType, boshTerminal("bad-request"))
		return
	}
	if b.sid == "" {
		h.create(w, r, b)
		return
	}
	s.web.mu.Lock()
	sess := s.web.bosh[b.sid]
	s.web.mu.Unlock()
	if sess == nil {
		writeBOSH(w, boshContentType, boshTerminal("item-not-found"))
		return
	}
	sess.request(w, r, b)
}

// boshTerminal is a terminating <body/> with condition cond (XEP-0124 §17.2).
func boshTerminal(cond string) []byte {
	return []byte("<body xmlns='" + NSHTTPBind + "' type='terminate' condition='" + cond + "'/>")
}

func writeBOSH(w http.ResponseWriter, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// create starts a session (XEP-0124 §7, XEP-0206 §3): the c2s stream begins
// with the header the creation request describes, and the creation request
// is held until the stream features arrive.
func (h *boshHandler) create(w http.ResponseWriter, r *http.Request, b *boshBody) {
	s := h.srv
	if !b.hasRID {
		writeBOSH(w, boshContentType, boshTerminal("bad-request"))
		return
	}
	wait := h.opts.MaxWait
	if b.wait >= 0 && time.Duration(b.wait)*time.Second < wait {
		wait = time.Duration(b.wait) * time.Second
	}
	hold := 1
	if b.hold == 0 || wait == 0 {
		hold = 0 // a polling session (XEP-0124 §12): every request is answered at once
	}
	ver := boshVersion
	if b.ver != "" && versionLess(b.ver, ver) {
		ver = b.ver
	}
	content := boshContentType
	if b.content != "" && !strings.ContainsAny(b.content, "\r\n") {
		content = b.content
	}
	sess := &boshSession{
		srv: s, sid: randomID(16),
		wait: wait, hold: hold, requests: hold + 1, inactive: h.opts.Inactivity,
		ver: ver, content: content, to: b.to, lang: b.lang,
		maxOut:  s.limits.SendQueueBytes,
		hi:      b.rid,
		early:   make(map[uint64]*boshReq),
		drained: make(chan struct{}),
	}
	sess.in = newInbox(0)
	sess.in.onRead = sess.readProgress
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	localAddr := ""
	if local != nil {
		localAddr = local.String()
	}
	// No TLS state: a session's requests may use several TLS connections,
	// so there is no single channel to bind SASL to.
	sess.conn = newWebConn(sess.in, r.RemoteAddr, localAddr, tls.ConnectionState{}, &boshSink{sess: sess})
	sess.conn.onClose = sess.connClosed
	if !s.trackWeb(sess.conn, sess.abort) {
		writeBOSH(w, content, boshTerminal("system-shutdown"))
		return
	}
	s.web.mu.Lock()
	if s.web.bosh == nil {
		s.web.bosh = make(map[string]*boshSession)
	}
	s.web.bosh[sess.sid] = sess
	s.web.mu.Unlock()
	go func() {
		defer s.untrackWeb(sess.conn)
		s.serveC2S(context.Background(), sess.conn, false)
		select {
		case <-sess.conn.done:
		case <-time.After(s.limits.WriteTimeout + 5*time.Second):
			sess.conn.Close()
		}
	}()

	req := &boshReq{rid: b.rid, create: true, waiter: make(chan []byte, 1)}
	sess.mu.Lock()
	req.end, _ = sess.in.push(context.Background(), streamHeader{to: b.to, lang: b.lang, version: "1.0"}.tcpHeader())
	sess.holdLocked(req)
	sess.flushLocked()
	sess.mu.Unlock()
	sess.await(w, r, req)
}

// versionLess compares "major.minor" versions (XEP-0124 §7.1: the minor
// number is a separate integer).
func versionLess(a, b string) bool {
	parse := func(v string) (int, int, bool) {
		maj, min, ok := strings.Cut(v, ".")
		x, err1 := strconv.Atoi(maj)
		y, err2 := strconv.Atoi(min)
		return x, y, ok && err1 == nil && err2 == nil
	}
	a1, a2, ok1 := parse(a)
	b1, b2, ok2 := parse(b)
	if !ok1 || !ok2 {
		return false
	}
	return a1 < b1 || (a1 == b1 && a2 < b2)
}

// request handles a request for an existing session (XEP-0124 §8-§14).
func (sess *boshSession) request(w http.ResponseWriter, r *http.Request, b *boshBody) {
	sess.mu.Lock()
	if sess.removed {
		sess.mu.Unlock()
		writeBOSH(w, boshContentType, boshTerminal("item-not-found"))
		return
	}
	if sess.idle != nil {
		sess.idle.Stop()
	}
	if b.hasAck {
		sess.pruneCacheLocked(b.ack)
	}
	terminate := b.typ == "terminate"
	limit := uint64(sess.requests)
	if terminate {
		limit++ // XEP-0124 §11: one more request to terminate
	}
	switch {
	case !b.hasRID:
		sess.failLocked(w, "bad-request")
		return
	case b.rid <= sess.hi:
		// XEP-0124 §14.3: a repeated request gets the same response.
		for _, c := range sess.cache {
			if c.rid == b.rid {
				body := c.body
				sess.flushLocked() // restarts the inactivity timer if nothing is held
				sess.mu.Unlock()
				writeBOSH(w, sess.content, body)
				return
			}
		}
		for _, q := range sess.held {
			if q.rid == b.rid {
				sess.supersedeLocked(q)
				sess.mu.Unlock()
				sess.await(w, r, q)
				return
			}
		}
		sess.failLocked(w, "item-not-found")
		return
	case b.rid > sess.hi+limit:
		// XEP-0124 §14.2: beyond the window.
		sess.failLocked(w, "item-not-found")
		return
	}
	if q := sess.early[b.rid]; q != nil {
		sess.supersedeLocked(q)
		sess.mu.Unlock()
		sess.await(w, r, q)
		return
	}
	if len(sess.held)+len(sess.early) >= int(limit) {
		// XEP-0124 §11: too many simultaneous requests.
		sess.failLocked(w, "policy-violation")
		return
	}
	payload := b.payload
	if b.restart {
		// XEP-0206 §5: a new stream on the same session, after SASL.
		to, lang := sess.to, sess.lang
		if b.to != "" {
			to = b.to
		}
		if b.lang != "" {
			lang = b.lang
		}
		payload = append(streamHeader{to: to, lang: lang, version: "1.0"}.tcpHeader(), payload...)
	}
	if terminate {
		payload = append(payload, "</stream:stream>"...)
	}
	q := &boshReq{rid: b.rid, terminate: terminate, waiter: make(chan []byte, 1), payload: payload}
	if b.rid == sess.hi+1 {
		sess.acceptLocked(q)
		for next := sess.early[sess.hi+1]; next != nil; next = sess.early[sess.hi+1] {
			delete(sess.early, next.rid)
			sess.acceptLocked(next)
		}
	} else {
		sess.early[b.rid] = q // waits for the missing rid (XEP-0124 §14.2)
	}
	sess.flushLocked()
	sess.mu.Unlock()
	sess.await(w, r, q)
}

// acceptLocked forwards q's payload to the c2s stream, in rid order, and
// holds q for its response.
func (sess *boshSession) acceptLocked(q *boshReq) {
	q.end, _ = sess.in.push(context.Background(), q.payload)
	q.payload = nil
	sess.hi = q.rid
	sess.holdLocked(q)
}

// holdLocked appends q to the held requests and starts its 'wait' timer.
func (sess *boshSession) holdLocked(q *boshReq) {
	sess.held = append(sess.held, q)
	if sess.wait > 0 {
		q.timer = time.AfterFunc(sess.wait, func() {
			sess.mu.Lock()
			defer sess.mu.Unlock()
			q.expired = true
			sess.flushLocked()
		})
	}
}

// supersedeLocked gives a held or early request to a retransmission of it
// (the client gave up on the first HTTP request): the first gets an empty
// answer, the new one the real response.
func (sess *boshSession) supersedeLocked(q *boshReq) {
	select {
	case q.waiter <- nil:
	default:
	}
	q.waiter = make(chan []byte, 1)
}

// await waits for q's response and writes it. A client that went away meanwhile
// leaves the response in the cache for its retransmission.
func (sess *boshSession) await(w http.ResponseWriter, r *http.Request, q *boshReq) {
	sess.mu.Lock()
	ch := q.waiter
	sess.mu.Unlock()
	select {
	case body := <-ch:
		if body == nil {
			body = []byte("<body xmlns='" + NSHTTPBind + "'/>")
		}
		writeBOSH(w, sess.content, body)
	case <-r.Context().Done():
	}
}

// readProgress runs after the c2s reader consumed input: held requests whose
// payload is now taken may be answered.
func (sess *boshSession) readProgress() {
	sess.mu.Lock()
	sess.flushLocked()
	sess.mu.Unlock()
}

// flushLocked answers held requests, oldest first, as the rules allow
// (XEP-0124 §8): once its payload is consumed, a request is answered when
// output is waiting, when more than 'hold' requests are held, when its
// 'wait' passed, at once in a polling session, and with the terminal body
// when the stream is over. With nothing held, the inactivity timer runs.
func (sess *boshSession) flushLocked() {
	for len(sess.held) > 0 && !sess.removed {
		q := sess.held[0]
		if sess.ended {
			sess.respondLocked(q, true)
			continue
		}
		if sess.in.readCount() < q.end {
			break
		}
		switch {
		case q.terminate:
			// XEP-0124 §13: the client ended the session.
			sess.endCond = ""
			sess.ended = true
			sess.respondLocked(q, true)
		case len(sess.out) > 0, len(sess.held) > sess.hold, q.expired, sess.hold == 0:
			sess.respondLocked(q, false)
		default:
			return
		}
	}
	if len(sess.held) == 0 && !sess.removed {
		if sess.idle == nil {
			sess.idle = time.AfterFunc(sess.inactive, sess.inactivity)
		} else {
			sess.idle.Reset(sess.inactive)
		}
	}
}

// respondLocked answers the oldest held request q with the waiting output;
// terminal makes it the session's last answer.
func (sess *boshSession) respondLocked(q *boshReq, terminal bool) {
	sess.held = sess.held[1:]
	if q.timer != nil {
		q.timer.Stop()
	}
	var b strings.Builder
	b.WriteString("<body xmlns='" + NSHTTPBind + "'")
	attr := func(name, value string) {
		b.WriteString(" " + name + "='")
		xml.EscapeText(&b, []byte(value))
		b.WriteString("'")
	}
	header := sess.header
	sess.header = nil
	if q.create {
		attr("sid", sess.sid)
		attr("wait", strconv.Itoa(int(sess.wait/time.Second)))
		attr("inactivity", strconv.Itoa(int(sess.inactive/time.Second)))
		attr("polling", strconv.Itoa(boshPolling))
		attr("requests", strconv.Itoa(sess.requests))
		attr("hold", strconv.Itoa(sess.hold))
		attr("ver", sess.ver)
		attr("from", sess.srv.domain.String())
		attr("ack", strconv.FormatUint(q.rid, 10))
	} else if sess.hi != q.rid {
		attr("ack", strconv.FormatUint(sess.hi, 10)) // XEP-0124 §9.1
	}
	if header != nil || q.create {
		// XEP-0206 §3: the stream's version and id, with the features.
		b.WriteString(" xmlns:xmpp='" + NSXBOSH + "' xmpp:version='1.0'")
		if sess.authid != "" {
			attr("authid", sess.authid)
		}
	}
	if sess.outStream {
		b.WriteString(" xmlns:stream='" + NSStreamNS + "'")
	}
	if terminal {
		b.WriteString(" type='terminate'")
		cond := sess.endCond
		if sess.outError {
			cond = "remote-stream-error" // XEP-0206 §5
		}
		if cond != "" {
			attr("condition", cond)
		}
	}
	if len(sess.out) == 0 {
		b.WriteString("/>")
	} else {
		b.WriteString(">")
		b.Write(sess.out)
		b.WriteString("</body>")
	}
	body := []byte(b.String())
	sess.out = nil
	sess.outStream, sess.outError = false, false
	close(sess.drained)
	sess.drained = make(chan struct{})

	sess.cache = append(sess.cache, boshCached{rid: q.rid, body: body})
	if len(sess.cache) > sess.requests {
		sess.cache = sess.cache[len(sess.cache)-sess.requests:]
	}
	select {
	case q.waiter <- body:
	default:
	}
	if terminal {
		sess.removeLocked()
	}
}

// pruneCacheLocked drops the responses the client acknowledged (XEP-0124 §9.2).
func (sess *boshSession) pruneCacheLocked(ack uint64) {
	i := 0
	for i < len(sess.cache) && sess.cache[i].rid <= ack {
		i++
	}
	sess.cache = sess.cache[i:]
}

// failLocked ends the session with a terminal binding condition (XEP-0124
// §17.2) given to this request and every held one, unlocks, and writes the
// answer. The c2s stream counts as lost.
func (sess *boshSession) failLocked(w http.ResponseWriter, cond string) {
	sess.srv.log.Info("bosh: session terminated", "sid", sess.sid[:8], "condition", cond)
	sess.ended = true
	sess.endCond = cond
	sess.out = nil
	sess.outStream, sess.outError = false, false
	for len(sess.held) > 0 {
		sess.respondLocked(sess.held[0], true)
	}
	sess.removeLocked()
	sess.mu.Unlock()
	writeBOSH(w, sess.content, boshTerminal(cond))
}

// removeLocked takes the session out of the sid table and ends what still
// waits on it: early requests get the terminal answer, the c2s stream (if
// still running) sees a lost connection.
func (sess *boshSession) removeLocked() {
	if sess.removed {
		return
	}
	sess.removed = true
	if sess.idle != nil {
		sess.idle.Stop()
	}
	for rid, q := range sess.early {
		delete(sess.early, rid)
		select {
		case q.waiter <- boshTerminal("item-not-found"):
		default:
		}
	}
	close(sess.drained)
	sess.drained = make(chan struct{})
	sess.in.closeWith(errTransportLost)
	s := sess.srv
	s.web.mu.Lock()
	if s.web.bosh[sess.sid] == sess {
		delete(s.web.bosh, sess.sid)
	}
	s.web.mu.Unlock()
}

// inactivity ends a session whose client stopped making requests (XEP-0124
// §10): the stream counts as lost.
func (sess *boshSession) inactivity() {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.removed || len(sess.held) > 0 {
		return // early requests alone do not count: the one they wait for never came
	}
	if !sess.ended {
		sess.srv.log.Info("bosh: session inactive, ending it", "sid", sess.sid[:8], "inactivity", sess.inactive)
	}
	sess.removeLocked()
}

// connClosed runs when the c2s code closed the stream's connection; if the
// stream did not end with a closing tag (a resumption moved the session
// elsewhere, the stream broke), the session terminates with
// remote-connection-failed.
func (sess *boshSession) connClosed() {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if !sess.ended {
		sess.ended = true
		sess.endCond = "remote-connection-failed"
	}
	sess.flushLocked()
}

// abort ends a session whose stream is still negotiating (ShutdownWeb): the
// held requests get the terminal condition of se.
func (sess *boshSession) abort(se *streamError) {
	sess.mu.Lock()
	if !sess.ended {
		sess.ended = true
		sess.endCond = se.cond.Err
		if se.cond.Err == streamSystemShutdown.Err {
			sess.endCond = "system-shutdown" // XEP-0124 §17.2
		}
	}
	sess.flushLocked()
	sess.mu.Unlock()
	sess.conn.Close()
}

// boshSink queues our stream's elements for the session's next response.
type boshSink struct{ sess *boshSession }

func (k *boshSink) open(h streamHeader, _ time.Time) error {
	sess := k.sess
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.header = &h
	sess.authid = h.id
	return nil
}

func (k *boshSink) element(el []byte, isStream bool, deadline time.Time) error {
	sess := k.sess
	sess.mu.Lock()
	defer sess.mu.Unlock()
	for len(sess.out)+len(el) > sess.maxOut && len(sess.out) > 0 && !sess.removed && !sess.ended {
		// The client does not collect its output: wait (the c2s session's
		// own queue then fills and ends it with resource-constraint, as on
		// TCP).
		ch := sess.drained
		sess.mu.Unlock()
		if err := waitDrained(ch, sess.conn.done, deadline); err != nil {
			sess.mu.Lock()
			return err
		}
		sess.mu.Lock()
	}
	if sess.removed || sess.ended {
		return nil // nobody will collect it
	}
	sess.out = append(sess.out, el...)
	if isStream {
		sess.outStream = true
		if bytes.HasPrefix(el, []byte("<stream:error")) {
			// The stream is over (RFC 6120 §4.9.1.1): the answer that
			// carries the error terminates the session.
			sess.outError = true
			sess.ended = true
		}
	}
	sess.flushLocked()
	return nil
}

func (k *boshSink) close(time.Time) error {
	sess := k.sess
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.ended = true
	sess.flushLocked()
	return nil
}

// waitDrained waits until drained or done is closed or deadline (zero: none)
// passes.
func waitDrained(drained, done <-chan struct{}, deadline time.Time) error {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-drained:
		return nil
	case <-timeout:
		return os.ErrDeadlineExceeded
	case <-done:
		return net.ErrClosed
	}
}
