package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// HandlerFunc answers one command: args is the request's "args" value
// (nil when absent), the result is marshalled to JSON as the reply's
// "result". An *[Error] gives the reply its code; any other error is
// reported with [CodeFailed] and its text. ctx ends with the server or
// after HandlerTimeout.
type HandlerFunc func(ctx context.Context, args json.RawMessage) (any, error)

// Server is the server side of the control channel. Register the commands
// with [Server.Handle] before [Server.Listen].
type Server struct {
	log      *slog.Logger
	mu       sync.Mutex
	handlers map[string]HandlerFunc
	// allow decides whether a peer with this uid may connect: the
	// server's own uid and root (tests replace it).
	allow func(uid uint32) bool
}

// NewServer returns a Server without commands, logging to log (nil:
// slog.Default()).
func NewServer(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	self := uint32(os.Getuid())
	return &Server{log: log, handlers: map[string]HandlerFunc{},
		allow: func(uid uint32) bool { return uid == self || uid == 0 }}
}

// Handle registers f for the command name, replacing any earlier one.
func (s *Server) Handle(name string, f HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[name] = f
}

func (s *Server) handler(name string) HandlerFunc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handlers[name]
}

// Listen creates the control socket DATA/control.sock (mode 0600) in
// dataDir and serves it until ctx ends; then it stops accepting, cancels
// the running handlers' contexts, and removes the socket file. A socket
// file left by a crashed server is replaced; one a server still answers on
// gives [ErrRunning] (wrapped). The returned wait blocks until the socket
// is removed and every connection is closed.
func (s *Server) Listen(ctx context.Context, dataDir string) (wait func(), err error) {
	path := SocketPath(dataDir)
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	// The peer credential check below is the authority; the mode keeps
	// other users from even connecting.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var conns sync.WaitGroup
	done := make(chan struct{})
	go func() {
		<-ctx.Done()
		l.Close() // unlinks the socket file
	}()
	go func() {
		defer close(done)
		defer conns.Wait()
		defer cancel()
		sem := make(chan struct{}, MaxConns)
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("control socket stopped", "err", err)
				}
				return
			}
			select {
			case sem <- struct{}{}:
			default:
				c.SetDeadline(time.Now().Add(time.Second))
				writeReply(c, reply{Error: "control: too many connections", Code: CodeBusy})
				c.Close()
				continue
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer func() { <-sem }()
				s.serveConn(ctx, c)
			}()
		}
	}()
	return func() { <-done }, nil
}

// serveConn answers the requests of one connection in turn.
func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	uid, err := peerUID(c)
	if err != nil || !s.allow(uid) {
		s.log.Warn("control: connection refused", "uid", uid, "err", err)
		c.SetDeadline(time.Now().Add(time.Second))
		writeReply(c, reply{Error: "control: permission denied", Code: "forbidden"})
		return
	}
	r := bufio.NewReaderSize(c, 4096)
	for {
		c.SetDeadline(time.Now().Add(IdleTimeout))
		line, err := readLine(r, MaxRequestBytes)
		if errors.Is(err, errTooLarge) {
			writeReply(c, reply{Error: fmt.Sprintf("control: request larger than %d bytes", MaxRequestBytes), Code: CodeTooLarge})
			return
		}
		if err != nil {
			return // EOF, timeout, server stopping
		}
		rep := s.call(ctx, line, uid)
		c.SetDeadline(time.Now().Add(IdleTimeout))
		if err := writeReply(c, rep); err != nil {
			return
		}
	}
}

// call runs the request line's handler.
func (s *Server) call(ctx context.Context, line []byte, uid uint32) reply {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		return reply{Error: "control: bad request: " + err.Error(), Code: CodeBadRequest}
	}
	h := s.handler(req.Command)
	if h == nil {
		return reply{Error: fmt.Sprintf("control: unknown command %q", req.Command), Code: CodeUnknownCommand}
	}
	hctx, cancel := context.WithTimeout(ctx, HandlerTimeout)
	defer cancel()
	res, err := s.run(hctx, h, req)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return reply{Error: ce.Message, Code: ce.Code}
		}
		s.log.Warn("control: command failed", "command", req.Command, "uid", uid, "err", err)
		return reply{Error: err.Error(), Code: CodeFailed}
	}
	s.log.Info("control: command done", "command", req.Command, "uid", uid)
	rep := reply{OK: true}
	if res != nil {
		if rep.Result, err = json.Marshal(res); err != nil {
			return reply{Error: "control: encoding the result: " + err.Error(), Code: CodeFailed}
		}
	}
	return rep
}

// run calls h, turning a panic into an error so one bad command cannot
// take the server down.
func (s *Server) run(ctx context.Context, h HandlerFunc, req request) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("control: handler panicked", "command", req.Command, "panic", p)
			res, err = nil, fmt.Errorf("control: %s failed (internal error)", req.Command)
		}
	}()
	return h(ctx, req.Args)
}

func writeReply(c net.Conn, rep reply) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_, err = c.Write(append(b, '\n'))
	return err
}
