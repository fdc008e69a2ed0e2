package main

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/xmpptest/lean"
)

// benchBody is the body of every message sent (RFC 6121 §5.2.3).
const benchBody = "The quick brown fox jumps over the lazy dog 0123456789"

// maxBatch bounds how many pre-built stanzas one Write carries.
const maxBatch = 64

// scramClients returns SCRAM-SHA-1 credentials per account; each caches the
// salted password once the server's salt is known.
func (b *bench) scramClients(n int) ([]*lean.Credentials, error) {
	out := make([]*lean.Credentials, n)
	for i := range out {
		c, err := lean.NewCredentials(lean.SCRAMSHA1, b.user(i), b.cfg.password)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// online logs account i in and makes it available.
func (b *bench) online(i int, sc *lean.Credentials) (*lean.Conn, error) {
	ctx, cancel := ctxUntil(b.work)
	defer cancel()
	x, err := b.cl.Login(ctx, b.work, sc)
	if err != nil {
		return nil, fmt.Errorf("login %s: %w", b.user(i), err)
	}
	b.noteTLS(x)
	if err := x.Available(); err != nil {
		x.Abort()
		return nil, fmt.Errorf("presence %s: %w", b.user(i), err)
	}
	return x, nil
}

// closeOne closes a stream and waits (at most 5 s) for the server's close.
func (b *bench) closeOne(x *lean.Conn) {
	d := time.Now().Add(5 * time.Second)
	if d.After(b.final) {
		d = b.final
	}
	x.NetConn().SetDeadline(d)
	x.CloseStream()
	x.WaitClosed(d)
}

// register creates accounts 0..N-1 by in-band registration (XEP-0077).
func (b *bench) register(res *result) {
	cfg := b.cfg
	res.N, res.Unit = cfg.users, "accounts/s"
	var created, existing atomic.Int64
	m := startCPU(cfg.pids)
	t0 := time.Now()
	ok, _ := parallel(cfg.users, cfg.concurrency, b.work, &b.errs, func(i int) error {
		ctx, cancel := ctxUntil(b.work)
		defer cancel()
		x, _, err := b.cl.Dial(ctx, b.work)
		if err != nil {
			return err
		}
		b.noteTLS(x)
		err = x.Register(b.user(i), cfg.password)
		b.closeOne(x)
		switch {
		case errors.Is(err, lean.ErrConflict):
			existing.Add(1)
		case err != nil:
			return fmt.Errorf("%s: %w", b.user(i), err)
		default:
			created.Add(1)
		}
		return nil
	})
	el := time.Since(t0).Seconds()
	m.record(res.Details, "")
	res.Value = float64(ok) / el
	res.Incomplete = ok < cfg.users
	res.Details["created"] = created.Load()
	res.Details["existing"] = existing.Load()
	res.Details["elapsed_s"] = round3(el)
}

// idle measures the servers' RSS per idle available session as a slope:
// it opens the first N/2 sessions (bound, available), waits --settle and
// reads the RSS (r1), opens the other N-N/2, waits again and reads r2; the
// value is (r2-r1)/(sessions opened in the second half), KiB per session.
// Start-up, first-use costs (TLS, SCRAM, caches) and the GC headroom that
// grows with the heap are paid before r1 and so are not charged to
// sessions. The whole-run figure (r2-r0)/sessions, from the RSS r0 before
// the first login, is kept in details as kib_per_session_from_start. Every
// wait ends by the work deadline; the sessions are closed at the end.
func (b *bench) idle(res *result) {
	cfg := b.cfg
	res.N, res.Unit = cfg.users, "KiB/session"
	res.Incomplete = true
	r0, err := sumRSS(cfg.pids)
	if err != nil {
		b.errs.add(err)
		return
	}
	res.Details["rss_r0_kib"] = r0
	scs, err := b.scramClients(cfg.users)
	if err != nil {
		b.errs.add(err)
		return
	}
	conns := make([]*lean.Conn, cfg.users)
	defer closeAll(conns, nil, b.final)
	// open logs accounts lo..hi-1 in, waits --settle (bounded by the work
	// deadline) and reads the RSS.
	settled := true
	open := func(phase string, lo, hi int) (ok int, rss int64, err error) {
		m := startCPU(cfg.pids)
		t0 := time.Now()
		ok, _ = parallel(hi-lo, cfg.concurrency, b.work, &b.errs, func(i int) error {
			x, err := b.online(lo+i, scs[lo+i])
			conns[lo+i] = x
			return err
		})
		res.Details[phase+"setup_s"] = round3(time.Since(t0).Seconds())
		m.record(res.Details, phase+"setup_")
		res.Details[phase+"sessions"] = ok
		settle := min(cfg.settle, time.Until(b.work))
		if settle > 0 {
			time.Sleep(settle)
		}
		settled = settled && settle >= cfg.settle
		res.Details[phase+"settle_s"] = round3(max(settle, 0).Seconds())
		rss, err = sumRSS(cfg.pids)
		return ok, rss, err
	}
	half := cfg.users / 2
	ok1, r1, err := open("half1_", 0, half)
	if err != nil {
		b.errs.add(err)
		return
	}
	res.Details["rss_r1_kib"] = r1
	ok2, r2, err := open("half2_", half, cfg.users)
	res.Details["sessions"] = ok1 + ok2
	if err != nil {
		b.errs.add(err)
		return
	}
	res.Details["rss_r2_kib"] = r2
	if ok1+ok2 > 0 {
		res.Details["kib_per_session_from_start"] = round3(float64(r2-r0) / float64(ok1+ok2))
	}
	if ok2 > 0 {
		res.Value = float64(r2-r1) / float64(ok2)
		res.Details["kib_per_session"] = round3(res.Value)
		res.Incomplete = ok1 < half || ok2 < cfg.users-half || !settled
	}
	closeAll(conns, nil, b.final)
	clear(conns)
	if v, err := sumRSS(cfg.pids); err == nil {
		res.Details["rss_after_close_kib"] = v
	}
}

// login measures full logins (TCP, STARTTLS, SCRAM-SHA-1, bind, stream
// close) per second with --concurrency workers.
func (b *bench) login(res *result) {
	cfg := b.cfg
	res.N, res.Unit = cfg.users, "logins/s"
	res.Incomplete = true
	scs, err := b.scramClients(cfg.users)
	if err != nil {
		b.errs.add(err)
		return
	}
	once := func(i int) error {
		ctx, cancel := ctxUntil(b.work)
		defer cancel()
		x, err := b.cl.Login(ctx, b.work, scs[i])
		if err != nil {
			return fmt.Errorf("login %s: %w", b.user(i), err)
		}
		b.noteTLS(x)
		b.closeOne(x)
		return nil
	}
	if cfg.warmup {
		var werrs errTracker
		t0 := time.Now()
		ok, _ := parallel(cfg.users, cfg.concurrency, b.work, &werrs, once)
		res.Details["warmup_s"] = round3(time.Since(t0).Seconds())
		res.Details["warmup_logins"] = ok
		res.Details["warmup_errors"] = werrs.n
		if werrs.n > 0 {
			res.Details["warmup_error_samples"] = werrs.counts
		}
	}
	total := cfg.users * cfg.rounds
	m := startCPU(cfg.pids)
	t0 := time.Now()
	ok, _ := parallel(total, cfg.concurrency, b.work, &b.errs, func(i int) error { return once(i % cfg.users) })
	el := time.Since(t0).Seconds()
	m.record(res.Details, "")
	res.Value = float64(ok) / el
	res.Incomplete = ok < total
	res.Details["logins"] = ok
	res.Details["attempted"] = total
	res.Details["concurrency"] = cfg.concurrency
	res.Details["elapsed_s"] = round3(el)
}

// flow runs the timed part of message and muc: every sender writes
// messages copies of stanza[s], keeping at most window in flight (sent
// minus inFlight's count of receipts), until the receipts reach expected
// or the work deadline passes. It returns the receipts and the seconds
// from the first send to the last receipt.
func (b *bench) flow(res *result, senders []*lean.Conn, stanzas [][]byte, acked []func() int64, notify []<-chan struct{},
	readers []*lean.Reader, expected int64) (int64, float64) {
	cfg := b.cfg
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	stop := make(chan struct{})
	for s, x := range senders {
		per := min(cfg.window, maxBatch)
		batch := bytes.Repeat(stanzas[s], per)
		size := len(stanzas[s])
		wg.Go(func() {
			t := time.NewTimer(time.Until(b.work))
			defer t.Stop()
			<-start
			n := 0
			for n < cfg.messages {
				room := cfg.window - (n - int(acked[s]()))
				// Refill in chunks of a quarter window at least, not
				// one stanza per receipt: fewer writes and wake-ups.
				if room < min(max(1, cfg.window/4), cfg.messages-n) {
					select {
					case <-notify[s]:
					case <-t.C:
						return
					case <-stop:
						return
					}
					continue
				}
				k := min(room, cfg.messages-n, per)
				if _, err := x.NetConn().Write(batch[:k*size]); err != nil {
					b.errs.add(fmt.Errorf("send: %w", err))
					return
				}
				n += k
				sent.Add(int64(k))
			}
		})
	}
	m := startCPU(cfg.pids)
	first := time.Now()
	close(start)
	var got int64
	for {
		got = 0
		for _, r := range readers {
			if r != nil {
				got += r.Count()
			}
		}
		if got >= expected || time.Now().After(b.work) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	m.record(res.Details, "")
	var last int64
	for _, r := range readers {
		if r != nil {
			last = max(last, r.LastUnixNano())
		}
	}
	el := time.Duration(last - first.UnixNano()).Seconds()
	if last == 0 || el <= 0 {
		el = time.Since(first).Seconds()
	}
	res.Details["sent"] = sent.Load()
	res.Details["expected"] = expected
	res.Details["delivered"] = got
	res.Details["elapsed_s"] = round3(el)
	return got, el
}

// message measures 1:1 chat messages delivered per second: sender 2i sends
// to receiver 2i+1 (their bare JIDs), for every pair at once.
func (b *bench) message(res *result) {
	cfg := b.cfg
	res.N, res.Unit = cfg.pairs, "messages/s"
	res.Incomplete = true
	n := 2 * cfg.pairs
	scs, err := b.scramClients(n)
	if err != nil {
		b.errs.add(err)
		return
	}
	conns := make([]*lean.Conn, n)
	readers := make([]*lean.Reader, n)
	t0 := time.Now()
	ok, _ := parallel(n, cfg.concurrency, b.work, &b.errs, func(i int) error {
		x, err := b.online(i, scs[i])
		if err != nil {
			return err
		}
		x.NetConn().SetReadDeadline(b.final)
		kind := lean.CountNothing
		if i%2 == 1 {
			kind = lean.CountChat
		}
		readers[i] = x.StartReader(kind, "")
		conns[i] = x
		return nil
	})
	res.Details["setup_s"] = round3(time.Since(t0).Seconds())
	res.Details["sessions"] = ok
	var senders []*lean.Conn
	var stanzas [][]byte
	var acked []func() int64
	var notify []<-chan struct{}
	var recv []*lean.Reader
	for p := range cfg.pairs {
		s, r := conns[2*p], conns[2*p+1]
		if s == nil || r == nil {
			continue
		}
		rr := readers[2*p+1]
		senders = append(senders, s)
		stanzas = append(stanzas, lean.Message(lean.BareJID(r.JID()), "chat", benchBody))
		acked = append(acked, rr.Count)
		notify = append(notify, rr.Notify())
		recv = append(recv, rr)
	}
	res.Details["active_pairs"] = len(senders)
	res.Details["messages_per_sender"] = cfg.messages
	res.Details["window"] = cfg.window
	if len(senders) > 0 && time.Now().Before(b.work) {
		expected := int64(len(senders) * cfg.messages)
		got, el := b.flow(res, senders, stanzas, acked, notify, recv, expected)
		res.Value = float64(got) / el
		res.Incomplete = got < expected || len(senders) < cfg.pairs
	}
	closeAll(conns, readers, b.final)
}

// muc measures groupchat stanzas delivered per second in one room
// (XEP-0045): --users occupants, the first --senders of them sending.
func (b *bench) muc(res *result) {
	cfg := b.cfg
	res.N, res.Unit = cfg.users, "stanzas/s"
	res.Incomplete = true
	k := cfg.users
	room := cfg.room + "@" + cfg.mucDomain
	scs, err := b.scramClients(k)
	if err != nil {
		b.errs.add(err)
		return
	}
	conns := make([]*lean.Conn, k)
	readers := make([]*lean.Reader, k)
	var createdBy atomic.Value
	t0 := time.Now()
	join := func(i int) error {
		x, err := b.online(i, scs[i])
		if err != nil {
			return err
		}
		conns[i] = x
		created, owner, err := x.JoinRoom(room, b.user(i))
		if err != nil {
			return err
		}
		if created {
			createdBy.Store(b.user(i))
		}
		// The first occupant configures the room: a locked new room
		// needs the owner form; an existing room it owns is (re)opened.
		if i == 0 && (created || (owner && cfg.roomForm == "open")) {
			if err := x.ConfigureRoom(room, cfg.roomForm == "open"); err != nil {
				return err
			}
		}
		x.NetConn().SetReadDeadline(b.final)
		suffix := ""
		if i < cfg.senders {
			suffix = "/" + b.user(i)
		}
		readers[i] = x.StartReader(lean.CountGroupchat, suffix)
		return nil
	}
	// The first occupant creates the room; the others join it in parallel.
	ok := 0
	if err := join(0); err != nil {
		b.errs.add(fmt.Errorf("first occupant: %w", err))
	} else {
		ok, _ = parallel(k-1, cfg.concurrency, b.work, &b.errs, func(i int) error { return join(i + 1) })
		ok++
	}
	res.Details["setup_s"] = round3(time.Since(t0).Seconds())
	res.Details["occupants"] = ok
	if v := createdBy.Load(); v != nil {
		res.Details["room_created_by"] = v
	}
	var senders []*lean.Conn
	var stanzas [][]byte
	var acked []func() int64
	var notify []<-chan struct{}
	stanza := lean.Message(room, "groupchat", benchBody)
	for i := 0; i < cfg.senders; i++ {
		if readers[i] == nil {
			continue
		}
		senders = append(senders, conns[i])
		stanzas = append(stanzas, stanza)
		acked = append(acked, readers[i].Own)
		notify = append(notify, readers[i].Notify())
	}
	res.Details["senders"] = len(senders)
	res.Details["messages_per_sender"] = cfg.messages
	res.Details["window"] = cfg.window
	res.Details["room"] = room
	res.Details["room_form"] = cfg.roomForm
	if len(senders) > 0 && time.Now().Before(b.work) {
		expected := int64(len(senders) * cfg.messages * ok)
		got, el := b.flow(res, senders, stanzas, acked, notify, readers, expected)
		res.Value = float64(got) / el
		res.Incomplete = got < expected || ok < k || len(senders) < cfg.senders
	}
	closeAll(conns, readers, b.final)
}
