package proxy65

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SOCKS5 constants (RFC 1928) in the subset XEP-0065 §5.3.2 uses.
const (
	socksVersion    = 5
	methodNoAuth    = 0x00
	methodNone      = 0xff
	cmdConnect      = 1
	atypDomain      = 3
	repSucceeded    = 0x00
	repFailure      = 0x01
	repNotAllowed   = 0x02
	repCmdUnsupp    = 0x07
	repAtypUnsupp   = 0x08
	hashLen         = 40 // hex SHA-1
	relayBufferSize = 32 << 10
)

// stream is one bytestream: its (at most two) connections, keyed in
// Proxy.streams by the DST.ADDR hash.
type stream struct {
	hash      string
	conns     []net.Conn
	active    chan struct{} // closed on activation
	activated bool

	bytes    atomic.Int64
	last     atomic.Int64 // UnixNano of the last byte relayed
	done     atomic.Int32 // directions finished
	stopOnce sync.Once
}

func (s *stream) touch() { s.last.Store(time.Now().UnixNano()) }

func (s *stream) idleFor() time.Duration { return time.Since(time.Unix(0, s.last.Load())) }

// stop closes both connections (the other direction's read then fails).
func (s *stream) stop() {
	s.stopOnce.Do(func() {
		for _, c := range s.conns {
			c.Close()
		}
	})
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !p.admit(c) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.release(c)
			p.serve(c)
		}()
	}
}

// admit counts c against the connection limits.
func (p *Proxy) admit(c net.Conn) bool {
	var ip netip.Addr
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = a.AddrPort().Addr().Unmap()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.conns) >= p.cfg.MaxConns || p.byIP[ip] >= p.cfg.MaxConnsPerIP {
		p.log.Debug("SOCKS5 connection refused: too many", "from", c.RemoteAddr().String())
		return false
	}
	p.conns[c] = ip
	p.byIP[ip]++
	return true
}

func (p *Proxy) release(c net.Conn) {
	c.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	ip, ok := p.conns[c]
	if !ok {
		return
	}
	delete(p.conns, c)
	if p.byIP[ip]--; p.byIP[ip] <= 0 {
		delete(p.byIP, ip)
	}
}

// serve runs one SOCKS5 connection: negotiation, waiting for activation,
// then relaying what it reads to the other connection.
func (p *Proxy) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout))
	hash, ok := p.handshake(c)
	if !ok {
		return
	}
	s, rep := p.join(hash, c)
	reply := []byte{socksVersion, rep, 0, atypDomain, byte(len(hash))}
	reply = append(append(reply, hash...), 0, 0) // BND = the request's DST (XEP-0065 §5.3.2)
	if _, err := c.Write(reply); err != nil || rep != repSucceeded {
		if s != nil {
			p.leave(s, c)
		}
		return
	}
	c.SetDeadline(time.Time{})
	timer := time.NewTimer(p.cfg.PendingTimeout)
	defer timer.Stop()
	select {
	case <-s.active:
	case <-p.done:
		return
	case <-timer.C:
		if p.leave(s, c) {
			p.log.Debug("SOCKS5 connection not activated in time", "from", c.RemoteAddr().String())
			return
		}
		<-s.active // activated just now
	}
	// Activated: the two connections are fixed from now on.
	other := s.conns[0]
	if other == c {
		other = s.conns[1]
	}
	p.relay(s, c, other)
}

// handshake reads the method selection and the CONNECT request (RFC 1928
// §3, §4) and returns the lowercased DST.ADDR hash, answering errors itself.
func (p *Proxy) handshake(c net.Conn) (string, bool) {
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != socksVersion || hdr[1] == 0 {
		return "", false
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return "", false
	}
	noAuth := false
	for _, m := range methods {
		noAuth = noAuth || m == methodNoAuth
	}
	if !noAuth {
		// XEP-0065 uses no authentication; RFC 1928 §3: X'FF' and close.
		c.Write([]byte{socksVersion, methodNone})
		return "", false
	}
	if _, err := c.Write([]byte{socksVersion, methodNoAuth}); err != nil {
		return "", false
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil || req[0] != socksVersion {
		return "", false
	}
	fail := func(rep byte) (string, bool) {
		c.Write([]byte{socksVersion, rep, 0, 1, 0, 0, 0, 0, 0, 0})
		return "", false
	}
	if req[1] != cmdConnect {
		return fail(repCmdUnsupp)
	}
	if req[3] != atypDomain {
		return fail(repAtypUnsupp)
	}
	var n [1]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return "", false
	}
	addr := make([]byte, int(n[0])+2) // DST.ADDR and DST.PORT (ignored: 0 per XEP-0065)
	if _, err := io.ReadFull(c, addr); err != nil {
		return "", false
	}
	hash := strings.ToLower(string(addr[:n[0]]))
	if len(hash) != hashLen || strings.Trim(hash, "0123456789abcdef") != "" {
		return fail(repFailure)
	}
	return hash, true
}

// join adds c to the bytestream hash, creating it for the first
// connection. It refuses a third connection and connections to an active
// bytestream.
func (p *Proxy) join(hash string, c net.Conn) (*stream, byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, repFailure
	}
	s := p.streams[hash]
	if s == nil {
		s = &stream{hash: hash, active: make(chan struct{})}
		p.streams[hash] = s
	}
	if s.activated || len(s.conns) >= 2 {
		return nil, repNotAllowed
	}
	s.conns = append(s.conns, c)
	return s, repSucceeded
}

// leave removes c from a bytestream that is not activated, reporting false
// if it was activated meanwhile (then c must relay).
func (p *Proxy) leave(s *stream, c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.activated {
		return false
	}
	for i, x := range s.conns {
		if x == c {
			s.conns = append(s.conns[:i], s.conns[i+1:]...)
			break
		}
	}
	if len(s.conns) == 0 && p.streams[s.hash] == s {
		delete(p.streams, s.hash)
	}
	return true
}

// relay copies src to dst until EOF, an error, the byte limit or the
// bytestream's idle timeout. EOF is passed on as a half-close so the other
// direction can finish; the second direction to end closes both and forgets
// the bytestream.
func (p *Proxy) relay(s *stream, src, dst net.Conn) {
	defer func() {
		if s.done.Add(1) == 2 {
			s.stop()
			p.mu.Lock()
			if p.streams[s.hash] == s {
				delete(p.streams, s.hash)
			}
			p.mu.Unlock()
		}
	}()
	buf := make([]byte, relayBufferSize)
	idle := p.cfg.IdleTimeout
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			// Past the limit, pass on what fits and end the bytestream.
			over := s.bytes.Add(int64(n)) - p.cfg.MaxBytes
			if over > 0 {
				n -= int(min(over, int64(n)))
			}
			s.touch()
			dst.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := dst.Write(buf[:n]); werr != nil || over > 0 {
				if over > 0 {
					p.log.Debug("bytestream reached its byte limit", "limit", p.cfg.MaxBytes)
				}
				s.stop()
				return
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && s.idleFor() < idle {
				continue // the other direction is moving
			}
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(interface{ CloseWrite() error }); ok {
					tc.CloseWrite()
					return
				}
			}
			s.stop()
			return
		}
	}
}
