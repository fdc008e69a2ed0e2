package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net/netip"
	"unicode/utf8"

	"github.com/xdg-go/scram"
	"mellium.im/xmpp/jid"
)

// Hashed Token SASL mechanisms (draft-schmaus-kitten-sasl-ht, now
// draft-ietf-kitten-sasl-ht) with SHA-256, as used for XEP-0484 FAST. The
// suffix names the channel binding mixed into the proofs.
const (
	// MechHTNone binds to nothing.
	MechHTNone = "HT-SHA-256-NONE"
	// MechHTUniq binds to tls-unique (RFC 5929 §3); TLS 1.2 only.
	MechHTUniq = "HT-SHA-256-UNIQ"
	// MechHTEndp binds to tls-server-end-point (RFC 5929 §4).
	MechHTEndp = "HT-SHA-256-ENDP"
	// MechHTExpr binds to tls-exporter (RFC 9266); TLS 1.3 only.
	MechHTExpr = "HT-SHA-256-EXPR"
)

// TokenSize is the length in characters of the tokens made by NewToken.
// It exceeds the 64-byte block size of SHA-256, which is what lets the
// server keep only TokenKey(token) (see NewToken).
const TokenSize = 88

// ErrCredentialsExpired is returned (possibly wrapped) by a TokenVerifier
// when the presented token matched but has expired; the attempt fails with
// credentials-expired (RFC 6120 §6.5.3, XEP-0484 §4.2).
var ErrCredentialsExpired = errors.New("auth: credentials expired")

// TokenVerifier checks a hashed-token login (XEP-0484 §3.4) against the
// stored tokens. It is called once per HT attempt with the normalised
// username and the mechanism name, and must call match with the key
// (TokenKey of the token) of each stored token that is valid for this user,
// client and mechanism; match compares the client's proof in constant time.
// It returns the key that matched, after its own checks and bookkeeping
// (expiry, XEP-0484 replay counter, token rotation). When none matched it
// returns an error wrapping ErrUnknownUser (failure not-authorized); for a
// token that matched but expired or is otherwise no longer trusted, an
// error wrapping ErrCredentialsExpired (credentials-expired) or
// ErrUnknownUser; any other error means the lookup failed
// (temporary-auth-failure).
type TokenVerifier func(ctx context.Context, username, mechanism string, match func(key []byte) bool) (key []byte, err error)

// NewToken returns a fresh XEP-0484 token (TokenSize characters of
// unpadded base64url, 528 random bits) to hand to the client, and its key,
// TokenKey(token), which is all the server needs to keep.
//
// Clients use the token's bytes as the HMAC-SHA-256 key of the HT
// mechanisms. HMAC first hashes keys longer than the hash's block size
// (RFC 2104 §2; 64 bytes for SHA-256), so for these tokens
// HMAC(token, m) == HMAC(SHA-256(token), m) and the server can verify with
// the digest alone: the token itself is never stored. The digest is still a
// bearer secret for the HT mechanisms (any verifier must hold a key that
// can compute the proofs), so stored keys need the same protection as SCRAM
// StoredKeys; what storing the digest adds is that the token string, which
// the client may reuse elsewhere (logs, exports), cannot be recovered.
func NewToken() (token string, key []byte) {
	b := make([]byte, TokenSize*3/4)
	if _, err := rand.Read(b); err != nil {
		panic("auth: reading random token: " + err.Error())
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, TokenKey(token)
}

// TokenKey returns the HMAC key equivalent of token as used by the HT
// mechanisms: SHA-256(token) for tokens longer than 64 bytes (all tokens
// from NewToken), the token's bytes otherwise.
func TokenKey(token string) []byte {
	if len(token) > sha256.BlockSize {
		sum := sha256.Sum256([]byte(token))
		return sum[:]
	}
	return []byte(token)
}

// HTProof computes the proofs of the HT-SHA-256 mechanisms for the HMAC key
// key (TokenKey of the token) and the channel-binding data cb (empty for
// -NONE): the initiator's HMAC(key, "Initiator" || cb), sent by the client
// after "authcid NUL", and the responder's HMAC(key, "Responder" || cb),
// the server's additional data on success.
func HTProof(key, cb []byte) (initiator, responder []byte) {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("Initiator"))
	mac.Write(cb)
	initiator = mac.Sum(nil)
	mac = hmac.New(sha256.New, key)
	mac.Write([]byte("Responder"))
	mac.Write(cb)
	responder = mac.Sum(nil)
	return initiator, responder
}

// TokenMechanisms returns the HT mechanisms usable on this connection,
// channel-binding ones first: -EXPR on TLS 1.3, -ENDP when our certificate
// allows tls-server-end-point, -UNIQ below TLS 1.3 when the handshake has a
// tls-unique value (Go provides none for resumed sessions without the
// extended master secret), and always -NONE. Empty without TLS state (FAST
// requires TLS, XEP-0484 §6).
func (a *Authenticator) TokenMechanisms() []string {
	return a.tokenMechanisms(a.tlsState())
}

func (a *Authenticator) tokenMechanisms(cs tls.ConnectionState) []string {
	if !tlsUsable(cs) {
		return nil
	}
	var out []string
	if cs.Version >= tls.VersionTLS13 {
		out = append(out, MechHTExpr)
	}
	if a.endpoint != nil {
		out = append(out, MechHTEndp)
	}
	if cs.Version < tls.VersionTLS13 && len(cs.TLSUnique) > 0 {
		out = append(out, MechHTUniq)
	}
	return append(out, MechHTNone)
}

// htBinding returns the channel-binding data mixed into the proofs of mech.
func (c *conv) htBinding(mech string) ([]byte, error) {
	switch mech {
	case MechHTNone:
		return nil, nil
	case MechHTUniq:
		return c.cs.TLSUnique, nil
	case MechHTEndp:
		return c.a.endpoint, nil
	case MechHTExpr:
		cb, err := c.a.bindingData(c.cs, scram.ChannelBindingTLSExporter)
		return cb.Data, err
	}
	return nil, errors.New("auth: not an HT mechanism: " + mech)
}

// hashedToken handles the HT mechanisms: the client's only message is
// authcid NUL HMAC(key, "Initiator" || cb-data); on success the server's
// additional data is HMAC(key, "Responder" || cb-data), which lets the
// client authenticate the server (mutual authentication in one round trip).
func (c *conv) hashedToken(mech string, msg []byte) (Outcome, error) {
	i := bytes.IndexByte(msg, 0)
	if i <= 0 || len(msg)-i-1 != sha256.Size || !utf8.Valid(msg[:i]) {
		return c.fail(failure{cond: condMalformedRequest, mech: mech, reason: "malformed HT message", record: true}), nil
	}
	proof := msg[i+1:]
	authcid := string(msg[:i])
	if j, err := jid.Parse(authcid); err == nil && j.Localpart() != "" && j.Resourcepart() == "" && j.Domainpart() == c.a.domain {
		authcid = j.Localpart() // some clients send the bare JID
	}
	user, valid := c.normaliseUsername(authcid)
	if !valid {
		return c.fail(failure{cond: condNotAuthorized, mech: mech, reason: "invalid username", record: true}), nil
	}
	if !c.a.opts.Throttle.Allow(netip.Addr{}, user) {
		return c.fail(failure{cond: condTemporaryFailure, mech: mech, user: user, reason: "account throttled"}), nil
	}
	cb, err := c.htBinding(mech)
	if err != nil || (mech != MechHTNone && len(cb) == 0) {
		return c.fail(failure{cond: condTemporaryFailure, mech: mech, user: user, reason: "channel binding data unavailable"}), nil
	}
	key, err := c.tokens(c.ctx, user, mech, func(key []byte) bool {
		want, _ := HTProof(key, cb)
		return hmac.Equal(want, proof)
	})
	switch {
	case err == nil && key != nil:
		_, responder := HTProof(key, cb)
		return succeed(mech, user, responder), nil
	case errors.Is(err, ErrCredentialsExpired):
		return c.fail(failure{cond: condCredentialsExpired, mech: mech, user: user, reason: "token expired", record: true}), nil
	case err == nil, errors.Is(err, ErrUnknownUser):
		reason := "no matching token"
		if err != nil {
			reason = err.Error()
		}
		return c.fail(failure{cond: condNotAuthorized, mech: mech, user: user, reason: reason, record: true}), nil
	default:
		return c.fail(failure{cond: condTemporaryFailure, mech: mech, user: user, reason: "token lookup: " + err.Error()}), nil
	}
}
