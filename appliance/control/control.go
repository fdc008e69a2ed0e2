// Package control is Hearth's local control channel: the running server
// listens on a unix socket in its data directory (DATA/control.sock) and
// the `hearth` command line talks to it for the actions that need the live
// server (its sessions, the group chat service's rooms), the way
// prosodyctl and ejabberdctl talk to theirs.
//
// The protocol is newline-delimited JSON over one stream connection: each
// request is one line {"command": NAME, "args": {...}} of at most
// [MaxRequestBytes] bytes, answered by one line {"ok": true, "result": ...}
// or {"ok": false, "error": TEXT, "code": CODE}. Only processes of the
// server's own user or root may connect (SO_PEERCRED, checked on every
// connection; the socket file is also mode 0600).
package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketName is the control socket's file name inside the data directory.
const SocketName = "control.sock"

// Limits of the protocol.
const (
	// MaxRequestBytes bounds one request line, newline included.
	MaxRequestBytes = 64 << 10
	// MaxReplyBytes bounds one reply line as the client reads it.
	MaxReplyBytes = 4 << 20
	// IdleTimeout is how long the server waits for a request on a
	// connection, and for a reply to be written.
	IdleTimeout = 30 * time.Second
	// HandlerTimeout bounds the time one handler may take (its context's
	// deadline).
	HandlerTimeout = 2 * time.Minute
	// MaxConns bounds the connections served at once; more are answered
	// with code [CodeBusy] and closed.
	MaxConns = 8
)

// Error codes of a failed reply ([Error.Code]). Handlers choose theirs with
// [Errorf]; a plain error becomes [CodeFailed].
const (
	CodeUnknownCommand = "unknown-command"
	CodeBadRequest     = "bad-request"
	CodeTooLarge       = "too-large"
	CodeBusy           = "busy"
	CodeNotFound       = "not-found"
	CodeExists         = "exists"
	CodeConflict       = "conflict"
	CodeFailed         = "failed"
)

// ErrNotRunning is returned by [Call] (wrapped, test with errors.Is) when no
// server listens on the data directory's control socket: the socket file
// is missing or nothing accepts on it (a stale file after a crash).
var ErrNotRunning = errors.New("control: no server is running on this data directory")

// ErrRunning is returned by [Server.Listen] (wrapped) when another server
// already answers on the data directory's control socket.
var ErrRunning = errors.New("control: another server is running on this data directory")

// Error is a failed reply: Code is one of the Code constants (or a
// handler's own), Message the human-readable text. [Call] returns it as
// *Error; handlers return one with [Errorf] to choose the code.
type Error struct {
	Code    string
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// request is one request line.
type request struct {
	Command string          `json:"command"`
	Args    json.RawMessage `json:"args,omitempty"`
}

// reply is one reply line.
type reply struct {
	OK     bool            `json:"ok"`
	Error  string          `json:"error,omitempty"`
	Code   string          `json:"code,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// SocketPath is the control socket of the data directory dataDir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// readLine reads one line of at most max bytes (the newline included) from
// r. A longer line gives errTooLarge; a last line without newline is
// returned with io.EOF only when empty.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > max {
			return nil, errTooLarge
		}
		line = append(line, chunk...)
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		}
		return line, err
	}
}

var errTooLarge = errors.New("control: line too long")

// Call sends command with args (marshalled to JSON; nil for none) to the
// server running on dataDir and decodes the reply's result into result
// (a pointer, or nil to ignore it). Errors: [ErrNotRunning] (wrapped) when
// no server listens there; [ErrUnavailable] (wrapped) when a server holds
// the data directory's lock (Lock) but its socket does not answer; *[Error]
// when the server answered with an
// error; others for I/O or encoding failures. Without a deadline on ctx the
// call gives up after HandlerTimeout plus IdleTimeout.
func Call(ctx context.Context, dataDir, command string, args, result any) error {
	path := SocketPath(dataDir)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			if Running(dataDir) {
				return fmt.Errorf("%w (%s)", ErrUnavailable, path)
			}
			return fmt.Errorf("%w (%s)", ErrNotRunning, path)
		}
		return err
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(HandlerTimeout + IdleTimeout)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := request{Command: command}
	if args != nil {
		if req.Args, err = marshal(args); err != nil {
			return err
		}
	}
	line, err := marshal(req)
	if err != nil {
		return err
	}
	if len(line)+1 > MaxRequestBytes {
		return Errorf(CodeTooLarge, "control: request of %d bytes is larger than %d", len(line)+1, MaxRequestBytes)
	}
	// A server refusing the connection (peer check) may answer and close
	// before the request is written: its reply still counts.
	_, werr := conn.Write(append(line, '\n'))
	line, err = readLine(bufio.NewReader(conn), MaxReplyBytes)
	if err != nil {
		if werr != nil {
			return ctxErr(ctx, werr)
		}
		if errors.Is(err, io.EOF) {
			return errors.New("control: the server closed the connection without a reply")
		}
		return ctxErr(ctx, err)
	}
	var rep reply
	if err := json.Unmarshal(line, &rep); err != nil {
		return fmt.Errorf("control: bad reply: %w", err)
	}
	if !rep.OK {
		return &Error{Code: rep.Code, Message: rep.Error}
	}
	if result != nil && len(rep.Result) > 0 {
		if err := json.Unmarshal(rep.Result, result); err != nil {
			return fmt.Errorf("control: bad result of %s: %w", command, err)
		}
	}
	return nil
}

// ctxErr prefers the context's error to the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// removeStale removes the socket file at path if nothing answers on it.
// It returns ErrRunning (wrapped) when a server answers, and an error when
// path is something other than a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control: %s exists and is not a socket; remove it", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w (%s)", ErrRunning, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control: checking %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// marshal is json.Marshal without HTML escaping: texts full of <, > and &
// stay their own size, so what fits MaxRequestBytes is what the user typed.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
