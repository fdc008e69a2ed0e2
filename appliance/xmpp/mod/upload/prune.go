package upload

import (
	"context"
	"errors"
	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/internal/modutil"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearthxmpp/hearth/appliance/store"
)

// PruneStats says what one retention pass removed.
type PruneStats struct {
	// Files is the number of stored files deleted because their retention
	// ended; Bytes their total size.
	Files int
	Bytes int64
	// Slots is the number of expired open slots deleted.
	Slots int
	// Orphans is the number of files and temporary files deleted that no
	// upload accounted for (an interrupted upload, an account deleted
	// while the server was down).
	Orphans int
}

// Prune runs one retention pass by the server clock: it deletes files
// uploaded more than the retention ago (none with retention 0) and slots
// not used within the slot timeout, rows and files, in bounded batches;
// then temporary files of uploads no longer in progress and stored files
// without a row. A PUT in progress is never disturbed. It logs what it
// removed and returns the store's error, or ctx's when ctx ends between
// batches.
func (s *Service) Prune(ctx context.Context) (PruneStats, error) {
	var ps PruneStats
	now := s.srv.Now()
	var uploadedBy time.Time
	if s.retention > 0 {
		uploadedBy = now.Add(-s.retention)
	}
	err := s.pruneExpired(ctx, uploadedBy, now.Add(-s.slotTTL), &ps)
	if err == nil {
		err = s.pruneOrphans(ctx, &ps)
	}
	log := s.srv.Logger()
	switch {
	case err != nil:
		log.Error("upload: pruning failed", "err", err)
	case ps != PruneStats{}:
		log.Info("upload: pruned", "files", ps.Files, "bytes", ps.Bytes, "slots", ps.Slots, "orphans", ps.Orphans)
	}
	return ps, err
}

const pruneBatch = 200

func (s *Service) pruneExpired(ctx context.Context, uploadedBy, openBy time.Time, ps *PruneStats) error {
	skipped := map[string]bool{}
	for range 10000 { // bounded: each round deletes or skips a batch
		if err := ctx.Err(); err != nil {
			return err
		}
		us, err := s.st.ExpiredUploads(ctx, uploadedBy, openBy, pruneBatch+len(skipped))
		if err != nil {
			return err
		}
		var ids []string
		var doomed []store.Upload
		s.mu.Lock()
		for _, u := range us {
			if s.active[u.ID] || skipped[u.ID] {
				skipped[u.ID] = true
				continue
			}
			s.deleting[u.ID] = true
			ids = append(ids, u.ID)
			doomed = append(doomed, u)
		}
		s.mu.Unlock()
		if len(ids) == 0 {
			return nil
		}
		_, err = s.st.DeleteUploads(ctx, ids)
		for _, u := range doomed {
			if err == nil {
				removeFile(s.srv.Logger(), filePath(s.dir, u.ID))
				if u.Uploaded.IsZero() {
					ps.Slots++
				} else {
					ps.Files++
					ps.Bytes += u.Size
				}
			}
		}
		s.mu.Lock()
		for _, id := range ids {
			delete(s.deleting, id)
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if len(us) < pruneBatch+len(skipped) {
			return nil
		}
	}
	return nil
}

// pruneOrphans deletes temporary files whose PUT is not in progress and
// stored files that no row accounts for.
func (s *Service) pruneOrphans(ctx context.Context, ps *PruneStats) error {
	tmps, err := os.ReadDir(tmpDir(s.dir))
	if err != nil {
		return err
	}
	for _, e := range tmps {
		id, _, _ := strings.Cut(e.Name(), "-")
		s.mu.Lock()
		busy := s.active[id]
		s.mu.Unlock()
		if !busy && removeFile(s.srv.Logger(), filepath.Join(tmpDir(s.dir), e.Name())) {
			ps.Orphans++
		}
	}
	// List the files before reading the ids: a file renamed into place
	// after the listing is not looked at, and one listed had its row
	// created before (slot first, then PUT).
	files, err := os.ReadDir(filesDir(s.dir))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return nil
	}
	ids, err := s.st.UploadIDs(ctx)
	if err != nil {
		return err
	}
	for _, e := range files {
		if !ids[e.Name()] && removeFile(s.srv.Logger(), filePath(s.dir, e.Name())) {
			ps.Orphans++
		}
	}
	return nil
}

// removeFile deletes path and reports whether it existed; other errors are
// logged.
func removeFile(log *slog.Logger, path string) bool {
	err := os.Remove(path)
	if err == nil {
		return true
	}
	if !errors.Is(err, os.ErrNotExist) {
		log.Warn("upload: deleting a file failed", "err", err)
	}
	return false
}

// Start runs the retention job in a goroutine until ctx ends: one Prune at
// once, then one every prune interval. The returned channel is closed when
// the goroutine has finished (so the store may be closed). It always runs,
// also with retention 0, since expired slots and interrupted uploads must
// be cleaned up.
func (s *Service) Start(ctx context.Context) <-chan struct{} {
	return modutil.Periodic(ctx, s.tick, s.interval, func(ctx context.Context) { s.Prune(ctx) })
}
