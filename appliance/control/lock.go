package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockName is the file in the data directory a running server holds an
// exclusive advisory lock on (flock(2)) for as long as it serves, across
// its in-process restarts. The kernel drops the lock when the process
// ends, even by kill -9, so a stale file means nothing.
const LockName = "serve.lock"

// ErrUnavailable is returned by [Call] (wrapped) when a server holds the
// data directory's lock but its control socket does not answer: it is
// restarting its services, or failed to open the socket. Commands must not
// then act on the database as if no server ran.
var ErrUnavailable = errors.New("control: the server is running but its control socket does not answer")

// Lock takes the server lock of dataDir (created 0700 if missing) and
// returns the function that releases it. Errors: ErrRunning (wrapped) when
// another process holds it; others for file system failures.
func Lock(dataDir string) (release func(), err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s)", ErrRunning, path)
		}
		return nil, fmt.Errorf("control: locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// Running reports whether a server holds dataDir's lock (see Lock).
func Running(dataDir string) bool {
	f, err := os.Open(filepath.Join(dataDir, LockName))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
