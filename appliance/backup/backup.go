// Package backup writes a backup of a Hearth data directory while the
// server runs: a gzip-compressed tar (POSIX ustar/PAX) holding a consistent
// snapshot of the SQLite database (store.Store.Snapshot, SQLite VACUUM
// INTO) as hearth.db, and the other files of the directory (certificates
// and keys, ACME state) with, if asked, the uploaded files. Restore by
// unpacking it into an empty data directory while Hearth is stopped:
//
//	mkdir data && tar -xzf hearth-backup.tar.gz -C data
//
// The archive holds secrets (TLS keys, the TURN secret, SCRAM keys): keep
// it as safe as the appliance itself.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
)

// DBName is the database file's name in the data directory and the
// archive.
const DBName = "hearth.db"

// UploadsDir is the directory of uploaded files in the data directory
// (mod/upload's files and temporary files).
const UploadsDir = "uploads"

// tempPrefix names the temporary directory of a snapshot inside the data
// directory (on the same, persistent file system; /tmp may be memory).
const tempPrefix = ".backup-"

// Options choose what goes into a backup.
type Options struct {
	// Uploads includes the uploaded files (UploadsDir), which may be large.
	Uploads bool
	// Now is the time stamp of the snapshot's entry; zero means time.Now.
	Now time.Time
}

// Write streams the backup of dataDir, whose database st is open, to w.
// The database snapshot is made first, into a temporary file inside
// dataDir that is removed afterwards. Files that vanish while the
// directory is read (expired uploads) are skipped; symbolic links and
// other special files are left out. Errors: the snapshot's, the file
// system's, or w's (the archive is then incomplete).
func Write(ctx context.Context, w io.Writer, st *store.Store, dataDir string, o Options) error {
	removeStale(dataDir)
	tmp, err := os.MkdirTemp(dataDir, tempPrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	snap := filepath.Join(tmp, DBName)
	if err := st.Snapshot(ctx, snap); err != nil {
		return err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	if err := addFile(tw, snap, DBName, now); err != nil {
		return err
	}
	err = filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dataDir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		top, _, _ := strings.Cut(rel, "/")
		if d.IsDir() {
			if strings.HasPrefix(top, tempPrefix) || (top == UploadsDir && (!o.Uploads || rel == UploadsDir+"/tmp")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || rel == DBName || strings.HasPrefix(rel, DBName+"-") {
			return nil // the live database and its WAL: the snapshot stands for them
		}
		return addFile(tw, path, rel, time.Time{})
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// staleAge is when a snapshot directory left by a killed backup is
// removed by the next one.
const staleAge = 24 * time.Hour

// removeStale removes snapshot directories that a backup killed before its
// cleanup left in dataDir.
func removeStale(dataDir string) {
	ents, err := os.ReadDir(dataDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleAge {
			os.RemoveAll(filepath.Join(dataDir, e.Name()))
		}
	}
}

// addFile adds the regular file at path as name, skipping it if it
// vanished. A zero mtime keeps the file's own.
func addFile(tw *tar.Writer, path, name string, mtime time.Time) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: fi.Size(), Mode: int64(fi.Mode().Perm()),
		ModTime: fi.ModTime(), Format: tar.FormatPAX,
	}
	if !mtime.IsZero() {
		hdr.ModTime = mtime
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	// Exactly the size announced, even if the file grows meanwhile.
	_, err = io.CopyN(tw, f, fi.Size())
	return err
}
