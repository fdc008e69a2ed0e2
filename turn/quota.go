package turn

import (
	"errors"
	"net"
	"strings"
	"sync"

	"github.com/pion/stun/v2"
	pion "github.com/pion/turn/v3"
)

// The per-user allocation quota (RFC 8656 §7.2 step 7: "486 (Allocation
// Quota Reached) ... SHOULD define it based on the username used to
// authenticate the request"). pion/turn v3 has no quota hook: its
// AuthHandler sees the username but not the method, and the
// RelayAddressGenerator sees neither the user nor the client. So every
// socket pion reads from (each UDP socket, each accepted TCP/TLS
// connection) is wrapped in a quotaStream that looks at the STUN messages
// going in and out:
//
//   - an authenticated Allocate request (valid MESSAGE-INTEGRITY) reserves
//     one unit of its user's quota, or, with the quota used up, is answered
//     here with 486 and never reaches pion;
//   - pion's Allocate success response for that transaction names the
//     relayed transport address, whose relayConn then carries the user: the
//     reservation becomes the allocation's unit, returned when pion closes
//     the relay socket (Refresh with lifetime 0, expiry, connection loss,
//     Close);
//   - an error response, or pion reading the stream's next message (pion
//     handles one message at a time per socket), returns an unused
//     reservation.
//
// The user is the part of the TURN REST API username after Separator, so
// fresh credentials of the same person share the quota.

// quotaUser returns the quota key of a TURN REST API username: the user
// after Separator ("" when there is none).
func quotaUser(username string) string {
	_, user, _ := strings.Cut(username, Separator)
	return user
}

// reservation is the outcome of relayGenerator.reserve.
type reservation int

const (
	reserved reservation = iota // one unit reserved for the request
	existing                    // the 5-tuple has an allocation: pion answers (437, or a retransmitted success)
	refused                     // quota reached: answer 486
)

// reserve takes one unit of user's quota for an Allocate request on the
// 5-tuple tuple.
func (g *relayGenerator) reserve(user, tuple string) reservation {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byTuple[tuple] != nil {
		return existing
	}
	if g.used[user] >= g.max {
		return refused
	}
	g.used[user]++
	return reserved
}

// releaseLocked returns one unit of user's quota. g.mu must be held.
func (g *relayGenerator) releaseLocked(user string) {
	if g.used[user]--; g.used[user] <= 0 {
		delete(g.used, user)
	}
}

func (g *relayGenerator) release(user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releaseLocked(user)
}

// attach hands user's reservation to the relay socket on port, created for
// the 5-tuple tuple; without such a socket the reservation is returned.
func (g *relayGenerator) attach(port int, user, tuple string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	rc := g.byPort[port]
	if rc == nil || rc.owned {
		g.releaseLocked(user)
		return
	}
	rc.owned, rc.user, rc.tuple = true, user, tuple
	g.byTuple[tuple] = rc
}

// usedBy returns user's live allocations and pending reservations.
func (g *relayGenerator) usedBy(user string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used[user]
}

// pendingAllocate is an Allocate request being handled by pion.
type pendingAllocate struct {
	txID        [stun.TransactionIDSize]byte
	user, tuple string
}

// quotaStream watches the STUN messages of one socket pion reads from.
type quotaStream struct {
	g     *relayGenerator
	auth  func(username, realm string, src net.Addr) ([]byte, bool)
	proto string // "udp" or "tcp": part of the 5-tuple key
	local net.Addr

	mu      sync.Mutex
	pending *pendingAllocate
}

// inbound looks at a message from src before pion does. It returns the 486
// response to send instead of handing the message to pion, or nil.
func (s *quotaStream) inbound(frame []byte, src net.Addr) []byte {
	s.done() // pion finished the previous message
	if !stun.IsMessage(frame) {
		return nil
	}
	m := &stun.Message{Raw: append([]byte(nil), frame...)}
	if m.Decode() != nil || m.Type != stun.NewType(stun.MethodAllocate, stun.ClassRequest) {
		return nil
	}
	var username stun.Username
	var realm stun.Realm
	if username.GetFrom(m) != nil || realm.GetFrom(m) != nil {
		return nil // the unauthenticated first attempt: pion answers 401
	}
	key, ok := s.auth(username.String(), realm.String(), src)
	if !ok || stun.MessageIntegrity(key).Check(m) != nil {
		return nil // pion refuses it
	}
	user := quotaUser(username.String())
	tuple := s.proto + "|" + s.local.String() + "|" + src.String()
	switch s.g.reserve(user, tuple) {
	case reserved:
		s.mu.Lock()
		s.pending = &pendingAllocate{txID: m.TransactionID, user: user, tuple: tuple}
		s.mu.Unlock()
	case refused:
		res, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID),
			stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
			stun.CodeAllocQuotaReached, stun.MessageIntegrity(key), stun.Fingerprint)
		if err != nil {
			return nil
		}
		s.g.log.Info("TURN allocation refused: quota reached", "user", user, "max", s.g.max, "from", src.String())
		return res.Raw
	}
	return nil
}

// outbound looks at a message pion sends: the response to the pending
// Allocate request settles its reservation.
func (s *quotaStream) outbound(frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	if p == nil || !stun.IsMessage(frame) {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), frame...)}
	if m.Decode() != nil || m.Type.Method != stun.MethodAllocate || m.TransactionID != p.txID {
		return
	}
	switch m.Type.Class {
	case stun.ClassSuccessResponse:
		var relayed stun.XORMappedAddress
		if relayed.GetFromAs(m, stun.AttrXORRelayedAddress) != nil {
			s.g.release(p.user)
		} else {
			s.g.attach(relayed.Port, p.user, p.tuple)
		}
	case stun.ClassErrorResponse:
		s.g.release(p.user)
	default:
		return
	}
	s.pending = nil
}

// done returns the reservation of a request pion answered without an
// Allocate response (or not at all).
func (s *quotaStream) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending != nil {
		s.g.release(s.pending.user)
		s.pending = nil
	}
}

// quotaPacketConn is a UDP socket as pion sees it.
type quotaPacketConn struct {
	net.PacketConn
	st *quotaStream
}

func (c *quotaPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			c.st.done()
			return n, addr, err
		}
		if res := c.st.inbound(p[:n], addr); res != nil {
			c.PacketConn.WriteTo(res, addr)
			continue
		}
		return n, addr, nil
	}
}

func (c *quotaPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.st.outbound(p)
	return c.PacketConn.WriteTo(p, addr)
}

// quotaListener hands pion quotaConns.
type quotaListener struct {
	net.Listener
	g    *relayGenerator
	auth func(username, realm string, src net.Addr) ([]byte, bool)
}

func (l *quotaListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &quotaConn{Conn: c, frames: pion.NewSTUNConn(c),
		st: &quotaStream{g: l.g, auth: l.auth, proto: "tcp", local: c.LocalAddr()}}, nil
}

var errFrameTooLarge = errors.New("turn: STUN message larger than the read buffer")

// quotaConn is a TCP or TLS connection as pion sees it: each Read returns
// exactly one STUN message or ChannelData frame (RFC 8656 §11.5), which
// pion's own framing passes through unchanged.
type quotaConn struct {
	net.Conn
	frames *pion.STUNConn
	st     *quotaStream
}

func (c *quotaConn) Read(p []byte) (int, error) {
	for {
		n, _, err := c.frames.ReadFrom(p)
		if err != nil {
			c.st.done()
			return 0, err
		}
		if n > len(p) {
			c.st.done()
			return 0, errFrameTooLarge
		}
		if res := c.st.inbound(p[:n], c.Conn.RemoteAddr()); res != nil {
			if _, err := c.Conn.Write(res); err != nil {
				return 0, err
			}
			continue
		}
		return n, nil
	}
}

func (c *quotaConn) Write(p []byte) (int, error) {
	c.st.outbound(p)
	return c.Conn.Write(p)
}

func (c *quotaConn) Close() error {
	c.st.done()
	return c.Conn.Close()
}
