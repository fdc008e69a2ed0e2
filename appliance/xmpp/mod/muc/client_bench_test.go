package muc

import (
	"testing"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest/lean/leanbench"
)

// TestBenchClientProcess is the benchmarks' load client (package leanbench)
// when this test binary runs as its child process; in a normal test run it
// is skipped at once.
func TestBenchClientProcess(t *testing.T) { leanbench.Child(t) }
