package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRunRejectsBadFlags checks that run refuses incomplete or
// contradictory flags with exit status 2 and a message, before dialling.
func TestRunRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--mode", "idle"}, "--addr and --domain are required"},
		{[]string{"--addr", "127.0.0.1:1", "--domain", "d", "--mode", "idle"}, "needs --server-pid"},
		{[]string{"--addr", "127.0.0.1:1", "--domain", "d", "--mode", "muc", "--users", "2", "--senders", "3"}, "--senders"},
		{[]string{"--addr", "127.0.0.1:1", "--domain", "d", "--mode", "nope"}, "unknown --mode"},
	} {
		var out, errb bytes.Buffer
		if rc := run(tc.args, &out, &errb); rc != 2 || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("run(%q) = %d, stderr %q; want 2 and %q", tc.args, rc, errb.String(), tc.msg)
		}
	}
}
