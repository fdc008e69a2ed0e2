// Package ddns keeps Hearth reachable under its domain from a home
// connection: it discovers the public addresses (IPv4 through STUN,
// RFC 8489 Binding requests; global IPv6 from the interfaces), and keeps the
// DNS records Hearth needs current through a libdns provider: A and AAAA for
// the domain, the XMPP SRV records (RFC 6120 §3.2.1, XEP-0368) and the
// component subdomains (groups., upload., ...).
//
// It only ever touches records it created itself: what it owns is kept in the
// store's settings, and a record at one of its names that it did not create is
// left alone and reported as a conflict in Status.
//
// Providers are plain libdns values (github.com/libdns/libdns): one
// constructor per DNS service (NewCloudflare, NewRFC2136), so another service
// is one constructor away. The same provider answers ACME DNS-01 challenges
// (package appliance/certs).
package ddns

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/libdns/cloudflare"
	"github.com/libdns/libdns"
	"github.com/libdns/rfc2136"
)

// Provider is a DNS service Hearth can read and change records at: the four
// libdns record interfaces (github.com/libdns/libdns v1). Its methods take
// the zone name ("example.org." or "example.org") and records with names
// relative to it. Implementations must be safe for concurrent use.
type Provider interface {
	libdns.RecordGetter
	libdns.RecordAppender
	libdns.RecordSetter
	libdns.RecordDeleter
}

// NewCloudflare returns the Cloudflare provider (github.com/libdns/cloudflare)
// authenticated with an API token that has Zone:Read and DNS:Edit permission
// for the zone (a scoped token, never the global API key). The token is sent
// only as a Bearer header to Cloudflare's API and never logged. It returns an
// error for an empty token. The concrete type is *cloudflare.Provider, whose
// HTTPClient field tests may set.
func NewCloudflare(token string) (Provider, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, errors.New("ddns: empty Cloudflare API token")
	}
	return &cloudflare.Provider{APIToken: token}, nil
}

// TSIG algorithms accepted by NewRFC2136 (RFC 8945 §6).
var tsigAlgorithms = map[string]bool{
	"hmac-sha1.": true, "hmac-sha224.": true, "hmac-sha256.": true,
	"hmac-sha384.": true, "hmac-sha512.": true,
}

// NewRFC2136 returns a provider for any DNS server that accepts RFC 2136
// dynamic updates signed with TSIG (RFC 8945), such as BIND, Knot or
// PowerDNS (github.com/libdns/rfc2136). server is "host:port" (port 53 is
// added when missing), keyName the TSIG key's name, keyAlg its algorithm
// ("hmac-sha256", "hmac-sha512", ...; default hmac-sha256) and secret its
// base64 secret. Updates and the zone transfer (AXFR, which Hearth uses to
// read the zone) go over TCP; the server must allow both for the key. It
// returns an error for a missing server or key name, an unknown algorithm or
// a secret that is not base64.
func NewRFC2136(server, keyName, keyAlg, secret string) (Provider, error) {
	if server == "" || keyName == "" {
		return nil, errors.New("ddns: RFC 2136 needs a server and a TSIG key name")
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	if keyAlg == "" {
		keyAlg = "hmac-sha256"
	}
	alg := strings.ToLower(keyAlg)
	if !strings.HasSuffix(alg, ".") {
		alg += "."
	}
	if !tsigAlgorithms[alg] {
		return nil, fmt.Errorf("ddns: unknown TSIG algorithm %q", keyAlg)
	}
	secret = strings.TrimSpace(secret)
	if _, err := base64.StdEncoding.DecodeString(secret); err != nil || secret == "" {
		return nil, errors.New("ddns: the TSIG secret must be base64")
	}
	return &rfc2136.Provider{Server: server, KeyName: keyName, KeyAlg: alg, Key: secret}, nil
}
