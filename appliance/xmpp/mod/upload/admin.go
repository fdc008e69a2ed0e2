package upload

import (
	"context"
	"log/slog"

	"github.com/hearthxmpp/hearth/appliance/store"
)

// Usage returns the storage taken by uploaded files, in total and per
// account (open slots are not counted), for the operator's pages.
func Usage(ctx context.Context, st *store.Store) (store.UploadStats, error) {
	return st.UploadStats(ctx)
}

// Usage is the package-level Usage on the service's store.
func (s *Service) Usage(ctx context.Context) (store.UploadStats, error) { return Usage(ctx, s.st) }

// DeleteUserFiles deletes every upload of username, stored files and open
// slots, from st and from dir (the directory given to Register), and
// returns how many files and bytes it removed. It works without a running
// Service (the account deletion path of the CLI); an upload of the user in
// progress at that moment fails when it completes. No uploads (or no such
// account) is not an error.
func DeleteUserFiles(ctx context.Context, st *store.Store, dir, username string) (files int, bytes int64, err error) {
	us, err := st.DeleteUserUploads(ctx, username)
	if err != nil {
		return 0, 0, err
	}
	for _, u := range us {
		removed := removeFile(slog.Default(), filePath(dir, u.ID))
		if removed && !u.Uploaded.IsZero() {
			files++
			bytes += u.Size
		}
	}
	return files, bytes, nil
}

// DeleteUserFiles is the package-level DeleteUserFiles on the service's
// store and directory.
func (s *Service) DeleteUserFiles(ctx context.Context, username string) (files int, bytes int64, err error) {
	return DeleteUserFiles(ctx, s.st, s.dir, username)
}
