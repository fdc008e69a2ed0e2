package ddns_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/ddns"
	"github.com/libdns/cloudflare"
)

// cfRecord is a DNS record as Cloudflare's API v4 shows it.
type cfRecord struct {
	ID      string `json:"id"`
	ZoneID  string `json:"zone_id"`
	Name    string `json:"name"`
	Type    string `json:"type"`
	Content string `json:"content"`
	TTL     int    `json:"ttl"`
	Proxied bool   `json:"proxied"`
	Data    *struct {
		Priority uint16 `json:"priority"`
		Weight   uint16 `json:"weight"`
		Port     uint16 `json:"port"`
		Target   string `json:"target"`
	} `json:"data,omitempty"`
}

// fakeCloudflare speaks the parts of the documented Cloudflare API v4 that
// libdns/cloudflare uses: GET /zones?name=, GET/POST
// /zones/{id}/dns_records (list with type, name, content.exact, page,
// per_page filters), PATCH and DELETE /zones/{id}/dns_records/{id}, with
// Bearer token authentication and the {success, errors, result,
// result_info} envelope.
type fakeCloudflare struct {
	t     *testing.T
	token string
	zone  string

	mu     sync.Mutex
	nextID int
	recs   []cfRecord
	calls  []string
}

const cfZoneID = "023e105f4ecef8ad9ca31a8372d0c353"

func (f *fakeCloudflare) add(name, typ, content string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.recs = append(f.recs, cfRecord{ID: fmt.Sprintf("foreign%d", f.nextID), ZoneID: cfZoneID, Name: name, Type: typ, Content: content, TTL: 1})
}

// records returns "name TYPE content" lines, sorted.
func (f *fakeCloudflare) records() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.recs {
		c := r.Content
		if r.Type == "SRV" {
			c = fmt.Sprintf("%d %d %d %s", r.Data.Priority, r.Data.Weight, r.Data.Port, r.Data.Target)
		}
		out = append(out, r.Name+" "+r.Type+" "+c)
	}
	slices.Sort(out)
	return out
}

func (f *fakeCloudflare) reply(w http.ResponseWriter, status int, result any, info any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	env := map[string]any{"success": status < 400, "errors": []any{}, "messages": []any{}, "result": result}
	if info != nil {
		env["result_info"] = info
	}
	json.NewEncoder(w).Encode(env)
}

func (f *fakeCloudflare) fail(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"success": false, "errors": []any{map[string]any{"code": code, "message": msg}}, "messages": []any{}, "result": nil})
}

// absName turns an API name (relative, "@" or absolute) into the FQDN
// Cloudflare stores.
func (f *fakeCloudflare) absName(n string) string {
	n = strings.TrimSuffix(strings.ToLower(n), ".")
	switch {
	case n == "" || n == "@":
		return f.zone
	case n == f.zone || strings.HasSuffix(n, "."+f.zone):
		return n
	}
	return n + "." + f.zone
}

func (f *fakeCloudflare) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		f.fail(w, http.StatusForbidden, 10000, "Authentication error")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/client/v4")
	q := r.URL.Query()
	recPrefix := "/zones/" + cfZoneID + "/dns_records"
	switch {
	case r.Method == http.MethodGet && path == "/zones":
		var res []any
		if q.Get("name") == f.zone {
			res = append(res, map[string]any{"id": cfZoneID, "name": f.zone, "status": "active"})
		}
		f.reply(w, 200, res, map[string]int{"page": 1, "per_page": 20, "count": len(res), "total_count": len(res)})
	case r.Method == http.MethodGet && path == recPrefix:
		res := []cfRecord{}
		for _, rec := range f.recs {
			if t := q.Get("type"); t != "" && rec.Type != t {
				continue
			}
			if n := q.Get("name"); n != "" && rec.Name != strings.ToLower(n) {
				continue
			}
			if c := q.Get("content.exact"); c != "" && rec.Content != c {
				continue
			}
			res = append(res, rec)
		}
		f.reply(w, 200, res, map[string]int{"page": 1, "per_page": 100, "count": len(res), "total_count": len(res)})
	case r.Method == http.MethodPost && path == recPrefix:
		var in cfRecord
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Type == "" || in.Name == "" {
			f.fail(w, 400, 9000, "DNS record type and name are required")
			return
		}
		in.Name = f.absName(in.Name)
		switch in.Type {
		case "A", "AAAA":
			ip, err := netip.ParseAddr(in.Content)
			if err != nil || ip.Is4() != (in.Type == "A") {
				f.fail(w, 400, 9005, "Content for "+in.Type+" record is invalid")
				return
			}
		case "CNAME":
			in.Content = strings.TrimSuffix(in.Content, ".")
		case "SRV":
			if in.Data == nil || in.Data.Port == 0 || in.Data.Target == "" {
				f.fail(w, 400, 9101, "SRV data is required")
				return
			}
			in.Data.Target = strings.TrimSuffix(in.Data.Target, ".")
			in.Content = fmt.Sprintf("%d %d %s", in.Data.Weight, in.Data.Port, in.Data.Target)
		default:
			f.fail(w, 400, 9000, "unsupported type in this fake")
			return
		}
		for _, rec := range f.recs {
			if rec.Name == in.Name && rec.Type == in.Type && rec.Content == in.Content {
				f.fail(w, 400, 81058, "An identical record already exists.")
				return
			}
			if rec.Name == in.Name && (rec.Type == "CNAME") != (in.Type == "CNAME") {
				f.fail(w, 400, 81053, "A CNAME record cannot exist with other records of the same name")
				return
			}
		}
		f.nextID++
		in.ID = fmt.Sprintf("rec%d", f.nextID)
		in.ZoneID = cfZoneID
		f.recs = append(f.recs, in)
		f.reply(w, 200, in, nil)
	case strings.HasPrefix(path, recPrefix+"/") && (r.Method == http.MethodDelete || r.Method == http.MethodPatch):
		id := strings.TrimPrefix(path, recPrefix+"/")
		i := slices.IndexFunc(f.recs, func(rec cfRecord) bool { return rec.ID == id })
		if i < 0 {
			f.fail(w, 404, 81044, "Record does not exist.")
			return
		}
		if r.Method == http.MethodPatch {
			f.t.Errorf("unexpected PATCH of %+v: Hearth adds and deletes exact records", f.recs[i])
			f.fail(w, 400, 9000, "no PATCH in this test")
			return
		}
		f.recs = slices.Delete(f.recs, i, i+1)
		f.reply(w, 200, map[string]string{"id": id}, nil)
	default:
		f.fail(w, 404, 7003, "Could not route to "+path)
	}
}

// toServer sends every request for api.cloudflare.com to the test server.
type toServer struct{ base *url.URL }

func (ts toServer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != "api.cloudflare.com" {
		return nil, fmt.Errorf("unexpected host %s", r.URL.Host)
	}
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host = ts.base.Scheme, ts.base.Host
	return http.DefaultTransport.RoundTrip(r2)
}

func TestCloudflare(t *testing.T) {
	const token = "cf-test-token-0123456789abcdef"
	fake := &fakeCloudflare{t: t, token: token, zone: "example.test"}
	fake.add("www.example.test", "A", "192.0.2.99")
	fake.add("example.test", "AAAA", "2001:db8::99") // someone else's AAAA
	srv := httptest.NewServer(fake)
	defer srv.Close()
	base, _ := url.Parse(srv.URL)

	prov, err := ddns.NewCloudflare(token)
	if err != nil {
		t.Fatal(err)
	}
	prov.(*cloudflare.Provider).HTTPClient = &http.Client{Transport: toServer{base}, Timeout: 10 * time.Second}
	src := &addrSource{}
	src.set("203.0.113.10", "2001:db8::10")
	logs := &logBuffer{}
	u, err := ddns.New(ddns.Config{
		Domain: "example.test", Provider: prov, ProviderName: "cloudflare",
		Components: []string{"groups.example.test", "upload.example.test"},
		C2SPort:    5222, C2STLSPort: 5223, S2SPort: 5269,
		Discover: src.Discover, Store: openStore(t),
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	want(t, "records", fake.records(),
		"_xmpp-client._tcp.example.test SRV 0 5 5222 example.test",
		"_xmpp-server._tcp.example.test SRV 0 5 5269 example.test",
		"_xmpps-client._tcp.example.test SRV 0 5 5223 example.test",
		"example.test A 203.0.113.10",
		"example.test AAAA 2001:db8::99",
		"groups.example.test CNAME example.test",
		"upload.example.test CNAME example.test",
		"www.example.test A 192.0.2.99",
	)
	if s := u.Status(); len(s.Conflicts) != 1 || !strings.Contains(s.Conflicts[0], "AAAA") {
		t.Errorf("conflicts = %q, want the foreign AAAA", s.Conflicts)
	}

	src.set("203.0.113.20", "")
	if err := u.Check(ctx); err != nil {
		t.Fatal(err)
	}
	want(t, "records after the change", fake.records(),
		"_xmpp-client._tcp.example.test SRV 0 5 5222 example.test",
		"_xmpp-server._tcp.example.test SRV 0 5 5269 example.test",
		"_xmpps-client._tcp.example.test SRV 0 5 5223 example.test",
		"example.test A 203.0.113.20",
		"example.test AAAA 2001:db8::99",
		"groups.example.test CNAME example.test",
		"upload.example.test CNAME example.test",
		"www.example.test A 192.0.2.99",
	)
	// A pass without changes only reads.
	fake.mu.Lock()
	fake.calls = nil
	fake.mu.Unlock()
	if err := u.Update(ctx, ddns.Addresses{IPv4: netip.MustParseAddr("203.0.113.20")}); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	for _, c := range fake.calls {
		if !strings.HasPrefix(c, "GET ") {
			t.Errorf("an unchanged zone got %s", c)
		}
	}
	fake.mu.Unlock()
	if strings.Contains(logs.String(), token) {
		t.Error("the API token appears in the logs")
	}
}

// A rejected token is an error in Status, and the token is not in it.
func TestCloudflareBadToken(t *testing.T) {
	fake := &fakeCloudflare{t: t, token: "the-right-token", zone: "example.test"}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	prov, _ := ddns.NewCloudflare("a-wrong-token")
	prov.(*cloudflare.Provider).HTTPClient = &http.Client{Transport: toServer{base}, Timeout: 10 * time.Second}
	src := &addrSource{}
	src.set("203.0.113.10", "")
	u, err := ddns.New(ddns.Config{Domain: "example.test", Provider: prov, Discover: src.Discover, Store: openStore(t),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := u.Check(ctx); err == nil {
		t.Fatal("update with a rejected token succeeded")
	}
	s := u.Status()
	if !strings.Contains(s.LastError, "Authentication error") || strings.Contains(s.LastError, "a-wrong-token") {
		t.Errorf("LastError = %q", s.LastError)
	}
}
