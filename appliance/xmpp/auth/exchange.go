package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/xdg-go/scram"
	"mellium.im/xmpp/jid"
)

// Errors a Transport returns from Response for a client message that ends
// the attempt with a SASL <failure/> rather than the stream. Authenticate and
// Reject map them to RFC 6120 §6.5 conditions.
var (
	// ErrAborted means the client sent <abort/> (RFC 6120 §6.4.4,
	// XEP-0388 §4.5): condition aborted, not counted by the Throttle.
	ErrAborted = errors.New("auth: client aborted")
	// ErrIncorrectEncoding means the payload was not valid base64 (or
	// longer than 8 KiB decoded): condition incorrect-encoding.
	ErrIncorrectEncoding = errors.New("auth: incorrect base64 encoding")
	// ErrMalformedRequest means an element of the SASL namespace that does
	// not fit the exchange (e.g. <auth/> where <response/> was expected):
	// condition malformed-request. Wrap it to add detail for the log.
	ErrMalformedRequest = errors.New("auth: malformed request")
)

// Transport carries the challenges and responses of one SASL exchange in
// the framing of one SASL profile: RFC 6120 §6.4 (the classic feature) or
// XEP-0388 §2.5 (SASL2, in the server package). Payloads are raw bytes; the
// transport does the base64 encoding.
type Transport interface {
	// Challenge sends a server challenge; data may be empty.
	Challenge(data []byte) error
	// Response reads the client's next response and returns its decoded
	// payload (empty, never nil, for an empty response). It returns an
	// error wrapping ErrAborted, ErrIncorrectEncoding or ErrMalformedRequest
	// to fail the attempt; any other error (I/O, an element outside the
	// SASL namespace wrapping ErrUnexpectedElement) ends the stream and is
	// returned by Authenticate as is.
	Response() ([]byte, error)
}

// Request is one authentication attempt for Authenticator.Authenticate.
type Request struct {
	// Mechanism is the mechanism name the client selected.
	Mechanism string
	// Initial is the initial response as sent, base64 (RFC 4648 §4) with
	// surrounding whitespace allowed; "=" also means an empty response
	// (RFC 6120 §6.4.2).
	Initial string
	// HasInitial reports whether the client sent an initial response at
	// all; if not, the exchange starts with an empty challenge.
	HasInitial bool
	// Transport frames challenges and responses. Required.
	Transport Transport
	// Tokens verifies hashed-token logins (the HT-* mechanisms of
	// XEP-0484 FAST). nil means the HT mechanisms are not available for
	// this attempt (they then fail with invalid-mechanism), as in the
	// classic SASL profile.
	Tokens TokenVerifier
}

// Outcome is the result of one attempt. Exactly one of User (success) and
// Condition (failure) is set.
type Outcome struct {
	// User is the authenticated user's normalised localpart (PRECIS
	// UsernameCaseMapped, RFC 8265 §3.3), "" on failure.
	User string
	// Mechanism is the mechanism that was attempted, as the client named it.
	Mechanism string
	// AdditionalData is the mechanism's success data (the SCRAM
	// server-final-message, RFC 5802 §3, or the HT responder hash); nil if
	// the mechanism has none (PLAIN).
	AdditionalData []byte
	// Condition is the RFC 6120 §6.5 failure condition (e.g.
	// "not-authorized", "credentials-expired"), "" on success.
	Condition string
}

// Success reports whether the attempt authenticated the client.
func (o Outcome) Success() bool { return o.Condition == "" }

// Authenticator runs SASL mechanism exchanges for one connection,
// independent of the SASL profile that frames them. It holds the
// connection's channel-binding data and its configuration; create one per
// connection (or stream) with NewAuthenticator. Its Feature is the classic
// RFC 6120 SASL feature; the server package frames XEP-0388 SASL2 over
// Authenticate with the same Authenticator, so both offer the same
// mechanisms and channel bindings and share the Throttle.
type Authenticator struct {
	opts     Options
	domain   string // normalised domainpart
	endpoint []byte // tls-server-end-point binding data, nil if unavailable
	log      *slog.Logger
}

// NewAuthenticator returns an Authenticator for opts. It panics if
// opts.Source is nil or opts.Domain is not a valid domainpart.
func NewAuthenticator(opts Options) *Authenticator {
	if opts.Source == nil {
		panic("auth: Options.Source is nil")
	}
	d, err := jid.New("", opts.Domain, "")
	if err != nil || opts.Domain == "" {
		panic(fmt.Sprintf("auth: invalid Options.Domain %q", opts.Domain))
	}
	a := &Authenticator{opts: opts, domain: d.Domainpart(), log: opts.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}
	if opts.Certificate != nil {
		a.endpoint = serverEndPoint(opts.Certificate)
	}
	return a
}

// Mechanisms returns the names of the password mechanisms offered on this
// connection, most preferred first: the -PLUS variants only when a channel
// binding is available (see ChannelBindings), then SCRAM-SHA-512/256/1 and
// PLAIN. The HT mechanisms are listed separately (TokenMechanisms).
func (a *Authenticator) Mechanisms() []string {
	cbs := a.bindingTypes(a.tlsState())
	var out []string
	for _, m := range mechanisms {
		if m.plus && len(cbs) == 0 {
			continue
		}
		out = append(out, m.name)
	}
	return out
}

// ChannelBindings returns the channel-binding types usable with the -PLUS
// mechanisms on this connection, most preferred first: "tls-exporter"
// (RFC 9266, TLS 1.3 only) and "tls-server-end-point" (RFC 5929 §4, when
// Options.Certificate allows). It is the XEP-0440 list; empty without TLS
// state.
func (a *Authenticator) ChannelBindings() []string {
	var out []string
	for _, t := range a.bindingTypes(a.tlsState()) {
		out = append(out, string(t))
	}
	return out
}

// Reject ends an attempt that never reached a mechanism (the client sent
// <abort/> or an unexpected element first) the way Authenticate would: it
// logs, records the failure in the Throttle when the cause is a malformed
// request, and returns the failure Outcome for cause (ErrAborted,
// ErrIncorrectEncoding or ErrMalformedRequest, possibly wrapped; anything
// else becomes malformed-request).
func (a *Authenticator) Reject(ctx context.Context, req Request, cause error) Outcome {
	c := &conv{a: a, ctx: ctx}
	fl := responseFailure(cause, req.Mechanism, "")
	return c.fail(*fl)
}

// Authenticate runs one exchange of req.Mechanism (RFC 4422 §3) over
// req.Transport: it sends challenges and reads responses until the
// mechanism succeeds or fails, but does not send the final <success/> or
// <failure/> itself, since the profiles differ there.
//
// A failed attempt is logged (user and address, never secrets), counted in
// Options.Throttle when it looks like a guess, and returned as an Outcome
// with its Condition: invalid-mechanism for a mechanism not offered on this
// connection; temporary-auth-failure while the address or account is
// throttled or the credential lookup fails; incorrect-encoding,
// malformed-request, aborted as the client's messages call for;
// invalid-authzid for an authorization identity other than the user's bare
// JID (RFC 6120 §6.3.8); credentials-expired for an expired token;
// not-authorized for wrong passwords, proofs and tokens, unknown users and
// channel-binding mismatches. Unknown users go through the same steps as
// known ones.
//
// The error is non-nil only when the stream cannot go on (I/O errors, and
// whatever Transport.Response returns apart from the failure errors above);
// the Outcome is then meaningless. Options.OnSuccess is not called: that is
// the framing profile's business.
func (a *Authenticator) Authenticate(ctx context.Context, req Request) (Outcome, error) {
	c := &conv{a: a, ctx: ctx, t: req.Transport, tokens: req.Tokens}
	c.cs = a.tlsState()
	c.cbTypes = a.bindingTypes(c.cs)
	out, err := c.run(req)
	if err == nil && out.Success() {
		a.log.Info("sasl: authenticated", "user", out.User, "mechanism", out.Mechanism, "ip", a.opts.RemoteIP)
	}
	return out, err
}

// DecodeBase64 decodes the base64 payload of a SASL element (RFC 6120
// §6.4.2, XEP-0388 §2.2), ignoring surrounding whitespace; "" and "=" both
// mean an empty payload (returned as a non-nil empty slice). It returns
// ErrIncorrectEncoding for invalid base64 or more than 8 KiB of data.
func DecodeBase64(s string) ([]byte, error) {
	b, ok := decodePayload(s)
	if !ok {
		return nil, ErrIncorrectEncoding
	}
	return b, nil
}

// serverEndPoint computes the tls-server-end-point channel binding data
// (RFC 5929 §4.1) for our certificate, or nil if it is undefined.
func serverEndPoint(cert *tls.Certificate) []byte {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return nil
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil
		}
	}
	var h hash.Hash
	switch leaf.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil
	}
	h.Write(leaf.Raw)
	return h.Sum(nil)
}

// tlsUsable reports whether cs describes a completed TLS handshake.
func tlsUsable(cs tls.ConnectionState) bool {
	return cs.Version != 0 && cs.HandshakeComplete
}

// bindingTypes lists the channel-binding types usable on a connection, in
// order of preference.
func (a *Authenticator) bindingTypes(cs tls.ConnectionState) []scram.ChannelBindingType {
	if !tlsUsable(cs) {
		return nil
	}
	var types []scram.ChannelBindingType
	if cs.Version >= tls.VersionTLS13 {
		types = append(types, scram.ChannelBindingTLSExporter)
	}
	if a.endpoint != nil {
		types = append(types, scram.ChannelBindingTLSServerEndpoint)
	}
	return types
}

func (a *Authenticator) bindingData(cs tls.ConnectionState, typ scram.ChannelBindingType) (scram.ChannelBinding, error) {
	switch typ {
	case scram.ChannelBindingTLSExporter:
		return scram.NewTLSExporterBinding(&cs)
	case scram.ChannelBindingTLSServerEndpoint:
		return scram.ChannelBinding{Type: typ, Data: a.endpoint}, nil
	}
	return scram.ChannelBinding{}, fmt.Errorf("auth: unsupported channel binding %q", typ)
}

func (a *Authenticator) tlsState() tls.ConnectionState {
	if a.opts.TLSState == nil {
		return tls.ConnectionState{}
	}
	return a.opts.TLSState()
}

// conv is the state of one exchange.
type conv struct {
	a       *Authenticator
	ctx     context.Context
	t       Transport
	tokens  TokenVerifier
	cs      tls.ConnectionState
	cbTypes []scram.ChannelBindingType
}

// decodePayload decodes the base64 content of a SASL element (RFC 6120
// §6.4.2); "=" and "" both mean an empty payload.
func decodePayload(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "=" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) > maxPayload {
		return nil, false
	}
	return b, true
}

// failure describes a failed attempt.
type failure struct {
	cond   string
	user   string // normalised username if known
	mech   string
	reason string // for the log only
	record bool   // count in the Throttle
}

// fail logs a failed attempt, records it if it counts, and returns its
// Outcome.
func (c *conv) fail(fl failure) Outcome {
	level := slog.LevelInfo
	if fl.cond == condTemporaryFailure {
		level = slog.LevelWarn
	}
	c.a.log.Log(c.ctx, level, "sasl: authentication failed",
		"condition", fl.cond, "mechanism", fl.mech, "user", fl.user,
		"ip", c.a.opts.RemoteIP, "reason", fl.reason)
	if fl.record {
		c.a.opts.Throttle.RecordFailure(c.a.opts.RemoteIP, fl.user)
	}
	return Outcome{Mechanism: fl.mech, Condition: fl.cond}
}

// succeed returns the success Outcome.
func succeed(mech, user string, data []byte) Outcome {
	return Outcome{User: user, Mechanism: mech, AdditionalData: data}
}

// responseFailure maps a Transport failure error to the failure to report,
// or returns nil for errors that end the stream.
func responseFailure(err error, mech, user string) *failure {
	switch {
	case errors.Is(err, ErrAborted):
		return &failure{cond: condAborted, mech: mech, user: user, reason: "client aborted"}
	case errors.Is(err, ErrIncorrectEncoding):
		return &failure{cond: condIncorrectEncoding, mech: mech, user: user, reason: "bad base64", record: true}
	default:
		return &failure{cond: condMalformedRequest, mech: mech, user: user, reason: err.Error(), record: true}
	}
}

// readResponse reads the client's next response. If the client aborts or
// sends something invalid, it returns the failure to report.
func (c *conv) readResponse(mech, user string) ([]byte, *failure, error) {
	data, err := c.t.Response()
	switch {
	case err == nil:
		return data, nil, nil
	case errors.Is(err, ErrAborted), errors.Is(err, ErrIncorrectEncoding), errors.Is(err, ErrMalformedRequest):
		return nil, responseFailure(err, mech, user), nil
	default:
		return nil, nil, err
	}
}

// run selects the mechanism and runs the exchange.
func (c *conv) run(req Request) (Outcome, error) {
	var (
		m  mechanism
		ht bool
	)
	if idx := slices.IndexFunc(mechanisms, func(m mechanism) bool { return m.name == req.Mechanism }); idx >= 0 {
		m = mechanisms[idx]
		if m.plus && len(c.cbTypes) == 0 {
			return c.fail(failure{cond: condInvalidMechanism, mech: req.Mechanism, reason: "mechanism not offered", record: true}), nil
		}
	} else if req.Tokens != nil && slices.Contains(c.a.tokenMechanisms(c.cs), req.Mechanism) {
		ht = true
		m = mechanism{name: req.Mechanism}
	} else {
		return c.fail(failure{cond: condInvalidMechanism, mech: req.Mechanism, reason: "mechanism not offered", record: true}), nil
	}
	if !c.a.opts.Throttle.Allow(c.a.opts.RemoteIP, "") {
		return c.fail(failure{cond: condTemporaryFailure, mech: m.name, reason: "address throttled"}), nil
	}
	var initial []byte
	if req.HasInitial {
		var ok bool
		if initial, ok = decodePayload(req.Initial); !ok {
			return c.fail(failure{cond: condIncorrectEncoding, mech: m.name, reason: "bad base64", record: true}), nil
		}
	} else {
		// No initial response: send an empty challenge (RFC 6120 §6.4.2).
		if err := c.t.Challenge(nil); err != nil {
			return Outcome{}, err
		}
		var fl *failure
		var err error
		initial, fl, err = c.readResponse(m.name, "")
		if err != nil {
			return Outcome{}, err
		}
		if fl != nil {
			return c.fail(*fl), nil
		}
	}
	switch {
	case ht:
		return c.hashedToken(m.name, initial)
	case m.hash == "":
		return c.plain(initial)
	default:
		return c.scram(m, initial)
	}
}

// normaliseUsername applies the JID localpart rules (PRECIS
// UsernameCaseMapped, RFC 8265 §3.3, plus RFC 7622 §3.3.1 exclusions).
func (c *conv) normaliseUsername(raw string) (string, bool) {
	if raw == "" || !utf8.ValidString(raw) {
		return "", false
	}
	j, err := jid.New(raw, c.a.domain, "")
	if err != nil || j.Localpart() == "" {
		return "", false
	}
	return j.Localpart(), true
}

// authzOK checks an authorization identity (RFC 6120 §6.3.8): it must be
// empty or the bare JID of the authenticated user.
func (c *conv) authzOK(authzid, user string) bool {
	if authzid == "" {
		return true
	}
	j, err := jid.Parse(authzid)
	if err != nil {
		return false
	}
	want, err := jid.New(user, c.a.domain, "")
	return err == nil && j.Equal(want)
}

// credential looks up user's credential for hash. For unknown or invalid
// users it returns a fake credential (fake=true) so the exchange proceeds
// and fails like a wrong password.
func (c *conv) credential(user, hashName string) (cred Credential, fake bool, err error) {
	if user != "" {
		cred, err = c.a.opts.Source.Credential(c.ctx, user, hashName)
		switch {
		case err == nil:
			if verr := cred.validate(); verr != nil {
				return Credential{}, false, verr
			}
			if cred.Hash != hashName {
				return Credential{}, false, fmt.Errorf("auth: asked for %s credential, got %s", hashName, cred.Hash)
			}
			return cred, false, nil
		case !errors.Is(err, ErrUnknownUser):
			return Credential{}, false, err
		}
	}
	return fakeCredential(user, hashName), true, nil
}

// fakeCredential returns a credential nobody can authenticate against, with
// a salt that is stable for (user, hash) during the life of the process and
// DefaultIterations, so an unknown user looks like a known one.
func fakeCredential(user, hashName string) Credential {
	mac := hmac.New(sha256.New, fakeSecret)
	mac.Write([]byte(hashName))
	mac.Write([]byte{0})
	mac.Write([]byte(user))
	salt := mac.Sum(nil)[:saltSize]
	_, size, _ := hashInfo(hashName)
	keys := make([]byte, 2*size)
	_, _ = rand.Read(keys)
	return Credential{Hash: hashName, Salt: salt, Iterations: DefaultIterations, StoredKey: keys[:size], ServerKey: keys[size:]}
}

// plain handles SASL PLAIN (RFC 4616): authzid NUL authcid NUL passwd.
func (c *conv) plain(msg []byte) (Outcome, error) {
	const mech = "PLAIN"
	parts := strings.Split(string(msg), "\x00")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" || !utf8.Valid(msg) {
		return c.fail(failure{cond: condMalformedRequest, mech: mech, reason: "malformed PLAIN message", record: true}), nil
	}
	authzid, authcid, password := parts[0], parts[1], parts[2]
	user, valid := c.normaliseUsername(authcid)
	if valid && !c.a.opts.Throttle.Allow(netip.Addr{}, user) {
		return c.fail(failure{cond: condTemporaryFailure, mech: mech, user: user, reason: "account throttled"}), nil
	}
	if valid && !c.authzOK(authzid, user) {
		return c.fail(failure{cond: condInvalidAuthzID, mech: mech, user: user, reason: "authzid not permitted", record: true}), nil
	}
	var cred Credential
	fake := true
	if valid {
		// Prefer the SHA-256 key, fall back to the others if it is absent.
		for _, h := range []string{HashSHA256, HashSHA512, HashSHA1} {
			cr, fk, err := c.credential(user, h)
			if err != nil {
				return c.fail(failure{cond: condTemporaryFailure, mech: mech, user: user, reason: "credential lookup: " + err.Error()}), nil
			}
			if !fk {
				cred, fake = cr, false
				break
			}
		}
	}
	if fake {
		cred = fakeCredential(authcid, HashSHA256)
	}
	// Always run the PBKDF2 check, also for unknown users, so both cases
	// take about the same time.
	ok := VerifyPassword(cred, password)
	if !ok || fake || !valid {
		reason := "wrong password"
		if fake {
			reason = "unknown user"
		}
		return c.fail(failure{cond: condNotAuthorized, mech: mech, user: user, reason: reason, record: true}), nil
	}
	return succeed(mech, user, nil), nil
}

var errThrottled = errors.New("auth: account throttled")

// scram handles the SCRAM family (RFC 5802, RFC 7677) including -PLUS.
func (c *conv) scram(m mechanism, msg []byte) (Outcome, error) {
	// Check the GS2 header ourselves: the library accepts only one channel
	// binding per conversation, and we may offer two.
	flag, _, found := strings.Cut(string(msg), ",")
	if !found {
		return c.fail(failure{cond: condMalformedRequest, mech: m.name, reason: "no GS2 header", record: true}), nil
	}
	var cb scram.ChannelBinding
	switch {
	case flag == "n" || flag == "y":
		if m.plus {
			return c.fail(failure{cond: condMalformedRequest, mech: m.name, reason: "-PLUS mechanism without channel binding", record: true}), nil
		}
		if flag == "y" && len(c.cbTypes) > 0 {
			// RFC 5802 §6: the client thinks we do not support channel
			// binding, but we advertised it: possible downgrade attack.
			return c.fail(failure{cond: condNotAuthorized, mech: m.name, reason: "channel binding downgrade (gs2 flag y)", record: true}), nil
		}
	case strings.HasPrefix(flag, "p="):
		typ := scram.ChannelBindingType(flag[2:])
		if !m.plus {
			return c.fail(failure{cond: condMalformedRequest, mech: m.name, reason: "channel binding with non-PLUS mechanism", record: true}), nil
		}
		if !slices.Contains(c.cbTypes, typ) {
			return c.fail(failure{cond: condNotAuthorized, mech: m.name, reason: "unsupported channel binding type " + string(typ), record: false}), nil // a client limitation, not a password guess: not throttled
		}
		var err error
		if cb, err = c.a.bindingData(c.cs, typ); err != nil || !cb.IsSupported() {
			return c.fail(failure{cond: condTemporaryFailure, mech: m.name, reason: fmt.Sprintf("channel binding data: %v", err)}), nil
		}
	default:
		return c.fail(failure{cond: condMalformedRequest, mech: m.name, reason: "bad GS2 flag", record: true}), nil
	}

	var (
		user      string
		valid     bool
		fake      bool
		lookupErr error
	)
	srv, err := scramHash(m.hash).NewServer(func(raw string) (scram.StoredCredentials, error) {
		user, valid = c.normaliseUsername(raw)
		if valid && !c.a.opts.Throttle.Allow(netip.Addr{}, user) {
			lookupErr = errThrottled
			return scram.StoredCredentials{}, lookupErr
		}
		var cred Credential
		if valid {
			cred, fake, lookupErr = c.credential(user, m.hash)
		} else {
			cred, fake = fakeCredential(raw, m.hash), true
		}
		if lookupErr != nil {
			return scram.StoredCredentials{}, lookupErr
		}
		return scram.StoredCredentials{
			KeyFactors: scram.KeyFactors{Salt: string(cred.Salt), Iters: cred.Iterations},
			StoredKey:  cred.StoredKey,
			ServerKey:  cred.ServerKey,
		}, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	var sc *scram.ServerConversation
	if m.plus {
		sc = srv.NewConversationWithChannelBindingRequired(cb)
	} else {
		sc = srv.NewConversation()
	}
	serverFirst, err := sc.Step(string(msg))
	switch {
	case errors.Is(lookupErr, errThrottled):
		return c.fail(failure{cond: condTemporaryFailure, mech: m.name, user: user, reason: "account throttled"}), nil
	case lookupErr != nil:
		return c.fail(failure{cond: condTemporaryFailure, mech: m.name, user: user, reason: "credential lookup: " + lookupErr.Error()}), nil
	case err != nil:
		return c.fail(failure{cond: condMalformedRequest, mech: m.name, user: user, reason: "client-first-message: " + err.Error(), record: true}), nil
	}
	if valid && !c.authzOK(sc.AuthzID(), user) {
		return c.fail(failure{cond: condInvalidAuthzID, mech: m.name, user: user, reason: "authzid not permitted", record: true}), nil
	}
	if err := c.t.Challenge([]byte(serverFirst)); err != nil {
		return Outcome{}, err
	}
	resp, fl, err := c.readResponse(m.name, user)
	if err != nil {
		return Outcome{}, err
	}
	if fl != nil {
		return c.fail(*fl), nil
	}
	serverFinal, err := sc.Step(string(resp))
	switch {
	case err != nil && serverFinal == "":
		// Syntax error; checked before the proof, so it does not depend on
		// whether the user exists.
		return c.fail(failure{cond: condMalformedRequest, mech: m.name, user: user, reason: "client-final-message: " + err.Error(), record: true}), nil
	case err != nil || !sc.Valid() || fake || !valid:
		reason := "wrong password"
		switch {
		case serverFinal == scram.ErrChannelBindingsDontMatch:
			reason = "channel binding mismatch"
		case fake:
			reason = "unknown user"
		case serverFinal != scram.ErrInvalidProof && err != nil:
			reason = err.Error()
		}
		return c.fail(failure{cond: condNotAuthorized, mech: m.name, user: user, reason: reason, record: true}), nil
	}
	return succeed(m.name, user, []byte(serverFinal)), nil
}
