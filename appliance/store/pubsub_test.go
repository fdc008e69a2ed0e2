package store

import (
	"reflect"
	"testing"
	"time"
)

func pepIDs(items []PEPItem) []string {
	var ids []string
	for _, it := range items {
		ids = append(ids, it.ID)
	}
	return ids
}

func wantIDs(t *testing.T, what string, items []PEPItem, err error, want ...string) {
	t.Helper()
	wantNoErr(t, what, err)
	if got := pepIDs(items); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: ids %q, want %q", what, got, want)
	}
}

func TestPEPNodes(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	cfg := []byte(`{"access_model":"open"}`)

	wantNoErr(t, "create", s.CreatePEPNode(ctx, "alice", "n2", cfg, t0, 0))
	wantNoErr(t, "create", s.CreatePEPNode(ctx, "alice", "n1", []byte(`{}`), t0.Add(time.Second), 0))
	wantErr(t, "create twice", s.CreatePEPNode(ctx, "alice", "n1", cfg, t0, 0), ErrExists)
	wantErr(t, "create beyond maxNodes", s.CreatePEPNode(ctx, "alice", "n3", cfg, t0, 2), ErrQuotaExceeded)
	wantErr(t, "create for nobody", s.CreatePEPNode(ctx, "nobody", "n", cfg, t0, 0), ErrNotFound)
	if err := s.CreatePEPNode(ctx, "alice", "bad", []byte(`{not json`), t0, 0); err == nil {
		t.Fatal("non-JSON config accepted")
	}

	nodes, err := s.PEPNodes(ctx, "alice")
	wantNoErr(t, "PEPNodes", err)
	if len(nodes) != 2 || nodes[0].Name != "n1" || nodes[1].Name != "n2" || string(nodes[1].Config) != string(cfg) ||
		!nodes[1].Created.Equal(t0) || nodes[1].Created.Location() != time.UTC {
		t.Fatalf("PEPNodes = %+v", nodes)
	}
	if nodes, err := s.PEPNodes(ctx, "bob"); err != nil || len(nodes) != 0 {
		t.Fatalf("bob's nodes = %v, %v", nodes, err)
	}
	_, err = s.PEPNodes(ctx, "nobody")
	wantErr(t, "PEPNodes nobody", err, ErrNotFound)
	n, err := s.PEPNode(ctx, "alice", "n2")
	if err != nil || string(n.Config) != string(cfg) {
		t.Fatalf("PEPNode = %+v, %v", n, err)
	}
	_, err = s.PEPNode(ctx, "alice", "n9")
	wantErr(t, "PEPNode missing", err, ErrNotFound)

	wantNoErr(t, "configure", s.ConfigurePEPNode(ctx, "alice", "n2", []byte(`{"access_model":"whitelist"}`), 0))
	n, _ = s.PEPNode(ctx, "alice", "n2")
	if string(n.Config) != `{"access_model":"whitelist"}` {
		t.Fatalf("after configure: %s", n.Config)
	}
	wantErr(t, "configure missing", s.ConfigurePEPNode(ctx, "alice", "n9", cfg, 0), ErrNotFound)
	wantNoErr(t, "delete", s.DeletePEPNode(ctx, "alice", "n2"))
	wantErr(t, "delete again", s.DeletePEPNode(ctx, "alice", "n2"), ErrNotFound)
}

func TestPEPItems(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")
	lim := PEPLimits{MaxItems: 3}
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	pub := func(id string, i int) error {
		_, err := s.PublishPEPItem(ctx, "alice", "n", PEPItem{ID: id, Publisher: "alice@x/r", Payload: []byte("<p>" + id + "</p>"), Published: at(i)}, nil, lim)
		return err
	}

	// No node and no create: not found.
	wantErr(t, "publish without node", pub("a", 0), ErrNotFound)
	_, err := s.PublishPEPItem(ctx, "nobody", "n", PEPItem{ID: "a"}, []byte(`{}`), lim)
	wantErr(t, "publish for nobody", err, ErrNotFound)
	_, err = s.PEPItems(ctx, "alice", "n", nil, 0)
	wantErr(t, "items of missing node", err, ErrNotFound)

	// Auto-create.
	created, err := s.PublishPEPItem(ctx, "alice", "n", PEPItem{ID: "a", Publisher: "alice@x/r", Payload: []byte("<p>a</p>"), Published: at(1)}, []byte(`{"x":1}`), lim)
	if err != nil || !created {
		t.Fatalf("auto-create publish = %v, %v", created, err)
	}
	if n, err := s.PEPNode(ctx, "alice", "n"); err != nil || string(n.Config) != `{"x":1}` || !n.Created.Equal(at(1)) {
		t.Fatalf("auto-created node = %+v, %v", n, err)
	}
	created, err = s.PublishPEPItem(ctx, "alice", "n", PEPItem{ID: "b", Payload: []byte("<p>b</p>"), Published: at(2)}, []byte(`{"x":2}`), lim)
	if err != nil || created {
		t.Fatalf("publish to existing node = %v, %v", created, err)
	}
	if n, _ := s.PEPNode(ctx, "alice", "n"); string(n.Config) != `{"x":1}` {
		t.Fatalf("create config replaced an existing node's: %s", n.Config)
	}
	wantNoErr(t, "publish c", pub("c", 3))
	// Republishing a moves it to the end; max 3 keeps b, c, a.
	wantNoErr(t, "republish a", pub("a", 4))
	items, err := s.PEPItems(ctx, "alice", "n", nil, 0)
	wantIDs(t, "after republish", items, err, "b", "c", "a")
	if string(items[2].Payload) != "<p>a</p>" || items[2].Publisher != "alice@x/r" || !items[2].Published.Equal(at(4)) {
		t.Fatalf("item a = %+v", items[2])
	}
	// A fourth item drops the oldest.
	wantNoErr(t, "publish d", pub("d", 5))
	items, err = s.PEPItems(ctx, "alice", "n", nil, 0)
	wantIDs(t, "max items", items, err, "c", "a", "d")
	items, err = s.PEPItems(ctx, "alice", "n", nil, 2)
	wantIDs(t, "last 2", items, err, "a", "d")
	items, err = s.PEPItems(ctx, "alice", "n", []string{"d", "zz", "c"}, 0)
	wantIDs(t, "by id", items, err, "c", "d")
	if _, err := s.PublishPEPItem(ctx, "alice", "n", PEPItem{}, nil, lim); err == nil {
		t.Fatal("empty item id accepted")
	}

	// Last items of every node.
	wantNoErr(t, "create empty", s.CreatePEPNode(ctx, "alice", "empty", []byte(`{}`), t0, 0))
	lasts, err := s.PEPLastItems(ctx, "alice")
	wantNoErr(t, "PEPLastItems", err)
	if len(lasts) != 2 || lasts[0].Node.Name != "empty" || lasts[0].Item != nil ||
		lasts[1].Node.Name != "n" || lasts[1].Item == nil || lasts[1].Item.ID != "d" || string(lasts[1].Node.Config) != `{"x":1}` {
		t.Fatalf("PEPLastItems = %+v", lasts)
	}

	// Retract is all or nothing.
	wantErr(t, "retract with a missing id", s.RetractPEPItems(ctx, "alice", "n", []string{"c", "zz"}), ErrNotFound)
	items, err = s.PEPItems(ctx, "alice", "n", nil, 0)
	wantIDs(t, "after failed retract", items, err, "c", "a", "d")
	wantNoErr(t, "retract", s.RetractPEPItems(ctx, "alice", "n", []string{"d", "c"}))
	items, err = s.PEPItems(ctx, "alice", "n", nil, 0)
	wantIDs(t, "after retract", items, err, "a")
	wantErr(t, "retract from missing node", s.RetractPEPItems(ctx, "alice", "zz", []string{"a"}), ErrNotFound)
	lasts, _ = s.PEPLastItems(ctx, "alice")
	if lasts[1].Item == nil || lasts[1].Item.ID != "a" {
		t.Fatalf("last item after retract = %+v", lasts[1].Item)
	}

	// Configure trims.
	wantNoErr(t, "publish e", pub("e", 6))
	wantNoErr(t, "publish f", pub("f", 7))
	wantNoErr(t, "configure", s.ConfigurePEPNode(ctx, "alice", "n", []byte(`{}`), 1))
	items, err = s.PEPItems(ctx, "alice", "n", nil, 0)
	wantIDs(t, "after configure max 1", items, err, "f")

	// Purge keeps the node.
	if n, err := s.PurgePEPNode(ctx, "alice", "n"); err != nil || n != 1 {
		t.Fatalf("purge = %d, %v", n, err)
	}
	items, err = s.PEPItems(ctx, "alice", "n", nil, 0)
	wantIDs(t, "after purge", items, err)
	_, err = s.PurgePEPNode(ctx, "alice", "zz")
	wantErr(t, "purge missing", err, ErrNotFound)

	// Deleting the node deletes its items; a new node of that name is empty.
	wantNoErr(t, "publish g", pub("g", 8))
	wantNoErr(t, "delete", s.DeletePEPNode(ctx, "alice", "n"))
	wantNoErr(t, "re-create", s.CreatePEPNode(ctx, "alice", "n", []byte(`{}`), t0, 0))
	items, err = s.PEPItems(ctx, "alice", "n", nil, 0)
	wantIDs(t, "re-created node", items, err)
}

func TestPEPQuota(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice")
	lim := PEPLimits{MaxNodes: 2, MaxBytes: 10}
	item := func(id, payload string) PEPItem { return PEPItem{ID: id, Payload: []byte(payload), Published: t0} }
	_, err := s.PublishPEPItem(ctx, "alice", "a", item("1", "12345"), []byte(`{}`), lim)
	wantNoErr(t, "first", err)
	_, err = s.PublishPEPItem(ctx, "alice", "b", item("1", "12345"), []byte(`{}`), lim)
	wantNoErr(t, "second node, 10 bytes in all", err)
	_, err = s.PublishPEPItem(ctx, "alice", "c", item("1", "1"), []byte(`{}`), lim)
	wantErr(t, "third node", err, ErrQuotaExceeded)
	_, err = s.PublishPEPItem(ctx, "alice", "a", item("2", "1"), []byte(`{}`), lim)
	wantErr(t, "over MaxBytes", err, ErrQuotaExceeded)
	items, err := s.PEPItems(ctx, "alice", "a", nil, 0)
	wantIDs(t, "failed publication changed nothing", items, err, "1")
	// Replacing an item counts only the new payload.
	_, err = s.PublishPEPItem(ctx, "alice", "a", item("1", "1234"), []byte(`{}`), lim)
	wantNoErr(t, "replace with a smaller payload", err)
	if _, err := s.PEPNode(ctx, "alice", "c"); err == nil {
		t.Fatal("node of a failed publication exists")
	}
}

func TestPEPDeleteAccountCascades(t *testing.T) {
	s, _ := openTest(t)
	mustCreate(t, s, "alice", "bob")
	for _, u := range []string{"alice", "bob"} {
		if _, err := s.PublishPEPItem(ctx, u, "n", PEPItem{ID: "1", Payload: []byte("<p/>"), Published: t0}, []byte(`{}`), PEPLimits{}); err != nil {
			t.Fatal(err)
		}
	}
	wantNoErr(t, "DeleteAccount", s.DeleteAccount(ctx, "alice"))
	for _, tbl := range []string{"pep_nodes", "pep_items"} {
		var a, b int
		wantNoErr(t, tbl, s.r.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE username = 'alice'), count(*) FILTER (WHERE username = 'bob') FROM `+tbl).Scan(&a, &b))
		if a != 0 || b != 1 {
			t.Errorf("%s: alice %d rows, bob %d rows", tbl, a, b)
		}
	}
	mustCreate(t, s, "alice")
	if nodes, err := s.PEPNodes(ctx, "alice"); err != nil || len(nodes) != 0 {
		t.Fatalf("re-created account has nodes %v, %v", nodes, err)
	}
}
