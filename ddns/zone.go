package ddns

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ZoneError is FindZone's failure: no candidate zone could be read with the
// provider's credentials.
type ZoneError struct {
	// Domain is the name a zone was looked for.
	Domain string
	// Tried are the candidate zones in the order tried (the domain, then
	// its parents down to the registrable name; never the bare TLD).
	Tried []string
	// Err is the provider's answer for the last candidate (the shortest
	// name, usually the registered domain).
	Err error
	// Refused reports that the provider refused the credentials for every
	// candidate (an HTTP 401 or 403 answer from an HTTP API such as
	// Cloudflare's v4 API), rather than not knowing the zone.
	Refused bool
}

func (e *ZoneError) Error() string {
	return fmt.Sprintf("ddns: no zone for %s (tried %s): %v", e.Domain, strings.Join(e.Tried, ", "), e.Err)
}

func (e *ZoneError) Unwrap() error { return e.Err }

// ZoneCandidates returns the names a zone holding domain may have: domain
// itself, then each parent with at least two labels ("a.b.example.org" →
// a.b.example.org, b.example.org, example.org). The bare top-level domain is
// never a candidate. Names are lower case without the final dot.
func ZoneCandidates(domain string) []string {
	d := normName(domain)
	var out []string
	for d != "" && strings.Contains(d, ".") {
		out = append(out, d)
		_, d, _ = strings.Cut(d, ".")
	}
	return out
}

// FindZone finds the DNS zone at p that holds domain by reading the records
// of each of ZoneCandidates(domain) in turn (libdns GetRecords); the first
// that p can read is the zone. It returns that zone's name (lower case,
// without the final dot), or a *ZoneError when none could be read, or ctx's
// error. It only reads, and so also checks that p's credentials work (for
// Cloudflare: the API token has Zone:Read on the zone; DNS:Edit is needed
// later to change records).
func FindZone(ctx context.Context, p Provider, domain string) (string, error) {
	cands := ZoneCandidates(domain)
	if len(cands) == 0 {
		return "", &ZoneError{Domain: domain, Err: errors.New("a zone needs a name with at least two labels")}
	}
	zerr := &ZoneError{Domain: normName(domain), Refused: true}
	for _, z := range cands {
		_, err := p.GetRecords(ctx, z)
		if err == nil {
			return z, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		zerr.Tried = append(zerr.Tried, z)
		zerr.Err = err
		msg := err.Error()
		if !strings.Contains(msg, "HTTP 401") && !strings.Contains(msg, "HTTP 403") {
			zerr.Refused = false
		}
	}
	return "", zerr
}
