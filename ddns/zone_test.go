package ddns_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/ddns"
	"github.com/libdns/cloudflare"
)

func TestZoneCandidates(t *testing.T) {
	for in, want := range map[string][]string{
		"chat.family.example.org.": {"chat.family.example.org", "family.example.org", "example.org"},
		"Example.ORG":              {"example.org"},
		"localhost":                nil,
		"":                         nil,
	} {
		if got := ddns.ZoneCandidates(in); !slices.Equal(got, want) {
			t.Errorf("ZoneCandidates(%q) = %q, want %q", in, got, want)
		}
	}
}

// cloudflareFake serves the Cloudflare API fake (cloudflare_test.go) for
// zone; the returned provider uses token.
func cloudflareFake(t *testing.T, zone, token, rightToken string) ddns.Provider {
	t.Helper()
	fake := &fakeCloudflare{t: t, token: rightToken, zone: zone}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	base, _ := url.Parse(srv.URL)
	prov, err := ddns.NewCloudflare(token)
	if err != nil {
		t.Fatal(err)
	}
	prov.(*cloudflare.Provider).HTTPClient = &http.Client{Transport: toServer{base}, Timeout: 10 * time.Second}
	return prov
}

// FindZone walks from the domain to its parents and returns the first zone
// the token can read; a wrong token or an unknown zone is a *ZoneError.
func TestFindZone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := cloudflareFake(t, "example.test", "tok", "tok")
	for _, d := range []string{"example.test", "chat.example.test", "a.b.example.test."} {
		z, err := ddns.FindZone(ctx, p, d)
		if err != nil || z != "example.test" {
			t.Errorf("FindZone(%s) = %q, %v; want example.test", d, z, err)
		}
	}
	_, err := ddns.FindZone(ctx, p, "other.test")
	var zerr *ddns.ZoneError
	if !errors.As(err, &zerr) || zerr.Refused || !slices.Equal(zerr.Tried, []string{"other.test"}) {
		t.Errorf("unknown zone: %v (%+v)", err, zerr)
	}
	if _, err := ddns.FindZone(ctx, p, "localhost"); !errors.As(err, &zerr) {
		t.Errorf("single label: %v", err)
	}

	bad := cloudflareFake(t, "example.test", "wrong-token", "tok")
	_, err = ddns.FindZone(ctx, bad, "chat.example.test")
	if !errors.As(err, &zerr) || !zerr.Refused || !strings.Contains(err.Error(), "Authentication error") {
		t.Errorf("wrong token: %v (%+v)", err, zerr)
	}
	if strings.Contains(err.Error(), "wrong-token") {
		t.Error("the token is in the error")
	}
}
