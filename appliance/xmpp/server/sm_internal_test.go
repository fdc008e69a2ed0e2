package server

import "testing"

// h counts modulo 2^32 (XEP-0198 §4).
func TestSMAckWrapAround(t *testing.T) {
	sm := &smState{outH: 1} // sent stanzas with h = 2^32-2, 2^32-1, 0, 1
	for _, h := range []uint32{1<<32 - 2, 1<<32 - 1, 0, 1} {
		sm.unacked = append(sm.unacked, unackedStanza{h: h})
	}
	if !sm.ack(1<<32-1) || len(sm.unacked) != 2 || sm.unacked[0].h != 0 {
		t.Fatalf("after ack 2^32-1: %+v", sm.unacked)
	}
	if sm.ack(5) {
		t.Fatal("acknowledged more than sent")
	}
	if !sm.ack(1) || len(sm.unacked) != 0 {
		t.Fatalf("after ack 1: %+v", sm.unacked)
	}
	if !sm.ack(1) {
		t.Fatal("repeated ack rejected")
	}
}
