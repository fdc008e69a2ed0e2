package lean

import (
	"bytes"
	"sync/atomic"
	"time"
)

// Count says what a [Reader] counts.
type Count int

// What a Reader counts. Error messages and messages without a body (chat
// states, subjects) are never counted.
const (
	// CountNothing only drains the stream.
	CountNothing Count = iota
	// CountChat counts chat or normal messages with a body (RFC 6121
	// §5.2.2).
	CountChat
	// CountGroupchat counts groupchat messages with a body (XEP-0045 §7.4),
	// and among them the occupant's own reflections.
	CountGroupchat
)

// Reader is the state of a connection's reading goroutine. Its counts are
// published each time the goroutine has consumed all it read (before a read
// that may block), with the time, so they are cheap to poll.
type Reader struct {
	n      atomic.Int64 // counted stanzas
	own    atomic.Int64 // groupchat: those from the occupant itself
	last   atomic.Int64 // Unix nanoseconds of the last published receipt
	notify chan struct{}
	done   chan struct{}
	err    error
}

// StartReader starts the connection's reading goroutine, which counts
// stanzas of kind until the stream or the connection ends (a read deadline
// set on [Conn.NetConn] bounds it). ownSuffix (groupchat) is "/nick" of this
// occupant: messages whose from ends with it (ASCII case folded) are also
// counted by [Reader.Own]. After StartReader only the Reader reads the
// Conn.
func (x *Conn) StartReader(kind Count, ownSuffix string) *Reader {
	r := &Reader{notify: make(chan struct{}, 1), done: make(chan struct{})}
	suffix := []byte(ownSuffix)
	go func() {
		defer func() {
			close(r.done)
			select {
			case r.notify <- struct{}{}:
			default:
			}
		}()
		var n, own, pubN, pubOwn int64
		x.sc.onBlock = func() {
			if n == pubN && own == pubOwn {
				return
			}
			pubN, pubOwn = n, own
			r.n.Store(n)
			r.own.Store(own)
			r.last.Store(time.Now().UnixNano())
			select {
			case r.notify <- struct{}{}:
			default:
			}
		}
		for {
			k, el, err := x.sc.Next()
			if err != nil {
				r.err = err
				x.sc.onBlock()
				return
			}
			if k == ItemClose {
				x.sc.onBlock()
				return
			}
			if kind == CountNothing || string(TagName(el)) != "message" {
				continue
			}
			typ, _ := Attr(el, "type")
			switch kind {
			case CountChat:
				if t := string(typ); (t == "chat" || t == "normal" || t == "") && HasBody(el) {
					n++
				}
			case CountGroupchat:
				if string(typ) == "groupchat" && HasBody(el) {
					n++
					if len(suffix) > 0 {
						if from, ok := Attr(el, "from"); ok && hasSuffixFold(from, suffix) {
							own++
						}
					}
				}
			}
		}
	}()
	return r
}

// Count returns the stanzas counted so far.
func (r *Reader) Count() int64 { return r.n.Load() }

// Own returns, for CountGroupchat with an ownSuffix, how many of the
// counted stanzas were the occupant's own reflections.
func (r *Reader) Own() int64 { return r.own.Load() }

// LastUnixNano returns the time of the last published receipt, in Unix
// nanoseconds, or 0 if none.
func (r *Reader) LastUnixNano() int64 { return r.last.Load() }

// Notify returns a channel (capacity 1) that gets a value when the counts
// grew, and when the goroutine ends.
func (r *Reader) Notify() <-chan struct{} { return r.notify }

// Done returns a channel closed when the goroutine has ended.
func (r *Reader) Done() <-chan struct{} { return r.done }

// Err returns what ended the goroutine (nil for the server's closing tag);
// valid after [Reader.Done] is closed.
func (r *Reader) Err() error { return r.err }

// hasSuffixFold reports whether b ends with suffix (ASCII case folding, as
// nicknames here are ASCII).
func hasSuffixFold(b, suffix []byte) bool {
	return len(b) >= len(suffix) && bytes.EqualFold(b[len(b)-len(suffix):], suffix)
}
