//go:build !linux

package upload

import "errors"

// freeDiskSpace is not implemented outside Linux: the free-disk reserve is
// not checked there.
func freeDiskSpace(string) (int64, error) {
	return 0, errors.New("free disk space unknown on this system")
}
