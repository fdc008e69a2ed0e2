package muc

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/disco"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modtest"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/mam"
	"github.com/hearthxmpp/hearth/appliance/xmpp/server"
	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest/lean/leanbench"
)

// benchOccupants is how many occupants the fan-out benchmark's room has,
// the sender included.
const benchOccupants = 10

// benchWindow is how many groupchat messages the sender may be ahead of the
// slowest occupant.
const benchWindow = 50

// BenchmarkGroupchatFanout has benchOccupants accounts online over STARTTLS
// in one room (created by the first, locked until it submits the
// configuration, XEP-0045 §10.1.2, opened to non-members: Hearth's default
// room is members-only); the first sends b.N
// groupchat messages (body, origin-id, receipt request) with at most
// benchWindow ahead of the slowest occupant, and the run ends when every
// occupant, the sender included (its reflection, §7.4), has read all of
// them. stanzas/s counts delivered copies (b.N × occupants) per second; the
// server runs disco, the user archive and the MUC service with its room
// archive (one store write per message), as hearth serve does. The client
// runs in a child process, so allocs/op, server-allocs/msg and server-B/msg
// are the server's per sent message (the whole fan-out). ns/op is per sent
// message.
func BenchmarkGroupchatFanout(b *testing.B) {
	e := modtest.New(b, func(c *server.Config) {
		c.Limits = server.Limits{ReadBytesPerSecond: 1 << 30, MaxConnsPerIP: 100000}
	})
	disco.Register(e.S)
	mam.Register(e.S)
	if _, err := Register(e.S, Options{Domain: svcDomain}); err != nil {
		b.Fatal(err)
	}
	room := roomJID("bench")
	idx := make([]string, benchOccupants)
	for i := range benchOccupants {
		e.AddUser(fmt.Sprintf("occ%d", i), "pw")
	}
	p := leanbench.Start(b, e.Addr(), modtest.Domain)
	for i := range benchOccupants {
		user := fmt.Sprintf("occ%d", i)
		idx[i] = p.Do("online %s pw bench", user)
		p.Do("raw %s <presence to='%s/%s'><x xmlns='%s'/></presence>", idx[i], room, user, NS)
		if i == 0 {
			p.Do("wait %s presence", idx[i])
			p.Do("raw %s <iq type='set' id='cfg' to='%s'><query xmlns='%s'><x xmlns='jabber:x:data' type='submit'>%s%s</x></query></iq>",
				idx[i], room, NSOwner, cfgField("FORM_TYPE", NSRoomConfig), cfgField("membersonly", "0"))
			p.Do("wait %s iq", idx[i])
			continue
		}
		p.Do("wait %s subject", idx[i])
	}
	counters := strings.Join(idx, ",")
	flood := func(n int) {
		p.Do("flood %s %s groupchat %d %d %s", idx[0], room, n, benchWindow, counters)
	}
	flood(100) // warm-up
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	flood(b.N)
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(b.N*benchOccupants)/elapsed.Seconds(), "stanzas/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(b.N), "server-allocs/msg")
	b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N), "server-B/msg")
}
