package ddns_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/ddns"
	"github.com/hearthxmpp/hearth/ddns/ddnstest"
)

// goodZone is what a correct manual setup of family.test looks like.
const goodZone = "@ A 203.0.113.10\n" +
	"@ AAAA 2001:db8::10\n" +
	"_xmpp-client._tcp SRV 0 5 5222 family.test.\n" +
	"_xmpps-client._tcp SRV 0 5 5223 family.test.\n" +
	"_xmpp-server._tcp SRV 0 5 5269 family.test.\n" +
	"groups CNAME family.test.\n" +
	"upload A 203.0.113.10\n" + // addresses instead of a CNAME are fine
	"upload AAAA 2001:db8::10\n"

func checkConfig(addr string) ddns.CheckConfig {
	return ddns.CheckConfig{
		Domain: "family.test", Components: []string{"groups.family.test", "upload.family.test"},
		C2SPort: 5222, C2STLSPort: 5223, S2SPort: 5269,
		IPv4: netip.MustParseAddr("203.0.113.10"), IPv6: netip.MustParseAddr("2001:db8::10"),
		Resolver: ddns.ResolverAt(addr), Timeout: 3 * time.Second,
	}
}

// problems returns "NAME TYPE: problem" for each failed check.
func problems(checks []ddns.RecordCheck) []string {
	var out []string
	for _, c := range checks {
		if !c.OK {
			out = append(out, c.Name+" "+c.Type+": "+c.Problem)
		}
	}
	return out
}

// CheckRecords against Knot: a correct zone passes; a missing SRV record,
// a wrong port, a wrong A record and a missing component are each reported.
func TestCheckRecordsKnot(t *testing.T) {
	bad := strings.NewReplacer(
		"_xmpps-client._tcp SRV 0 5 5223 family.test.\n", "", // missing
		"SRV 0 5 5269", "SRV 0 5 5999", // wrong port
		"@ A 203.0.113.10", "@ A 198.51.100.1", // wrong address
		"groups CNAME family.test.\n", "", // missing component
	).Replace(goodZone)
	k := ddnstest.StartKnot(t, map[string]string{"family.test": goodZone})
	kb := ddnstest.StartKnot(t, map[string]string{"family.test": bad})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	good := ddns.CheckRecords(ctx, checkConfig(k.Addr))
	if len(good) != 7 {
		t.Fatalf("got %d checks, want 7: %+v", len(good), good)
	}
	if p := problems(good); len(p) != 0 {
		t.Errorf("a correct zone has problems: %q", p)
	}
	for _, c := range good {
		if c.Got == "" || c.Want == "" {
			t.Errorf("check without want/got: %+v", c)
		}
	}

	got := problems(ddns.CheckRecords(ctx, checkConfig(kb.Addr)))
	for _, w := range []string{
		"family.test A: family.test points to 198.51.100.1, but Hearth's public IPv4 address is 203.0.113.10.",
		"_xmpps-client._tcp.family.test SRV: The SRV record is missing",
		"_xmpp-server._tcp.family.test SRV: The SRV record names port 5999, but Hearth listens on port 5269.",
		"groups.family.test CNAME: groups.family.test does not exist",
	} {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w)
		}
		if !found {
			t.Errorf("problem %q not reported; got %q", w, got)
		}
	}
	// The components are checked against the domain's (wrong) addresses:
	// upload. still has the old one.
	if len(got) != 5 {
		t.Errorf("got %d problems, want 5: %q", len(got), got)
	}

	// Unknown public addresses: what is there is only shown.
	cfg := checkConfig(k.Addr)
	cfg.IPv4, cfg.IPv6 = netip.Addr{}, netip.Addr{}
	if p := problems(ddns.CheckRecords(ctx, cfg)); len(p) != 0 {
		t.Errorf("unknown addresses: problems %q", p)
	}
	// A domain that does not exist at all.
	cfg.Domain, cfg.Components = "nothing.family.test", []string{"groups.nothing.family.test"}
	if p := problems(ddns.CheckRecords(ctx, cfg)); len(p) != 6 {
		t.Errorf("missing domain: problems %q", p)
	}
}
