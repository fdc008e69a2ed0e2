package webui

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hearthxmpp/hearth/appliance/xmpp/mod/upload"
)

// Fact is one line of a table of facts: what it is, its value in words,
// and for a setting made on the command line the `hearth serve` flag that
// changes it ("" if none).
type Fact struct {
	Label, Value, Flag string
}

// activity counts accounts with a session in a period.
type activity struct {
	Label string
	Users int
}

type systemView struct {
	adminView
	Facts    []Fact
	Activity []activity
	Checks   []systemCheck
}

// systemCheck is the state of a part configured elsewhere (certificate,
// dynamic DNS).
type systemCheck struct {
	Title  string
	Status *StepStatus
	Off    string
}

// humanBytes formats n bytes with a binary unit and one decimal.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " bytes"
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[i]
}

// humanDuration formats d as days, hours and minutes.
func humanDuration(d time.Duration) string {
	d = d.Round(time.Minute)
	days, hours, mins := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute)
	var parts []string
	add := func(n int, one, many string) {
		if n == 1 {
			parts = append(parts, "1 "+one)
		} else if n > 1 {
			parts = append(parts, strconv.Itoa(n)+" "+many)
		}
	}
	add(days, "day", "days")
	add(hours, "hour", "hours")
	if days == 0 {
		add(mins, "minute", "minutes")
	}
	if len(parts) == 0 {
		return "less than a minute"
	}
	return strings.Join(parts, ", ")
}

// processRSS is the resident set size of this process from
// /proc/self/status (Linux), or 0 when unknown.
func processRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return n << 10
			}
		}
	}
	return 0
}

// diskSpace reports the free (for unprivileged users) and total bytes of
// the file system holding dir.
func diskSpace(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// fileSizes sums the sizes of the files that exist among paths.
func fileSizes(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// SystemStatus is how the server is doing: the figures of the system page
// (/admin/system) and of `hearth status`, read at Now. Sizes are in
// bytes.
type SystemStatus struct {
	// Now is when the figures were read.
	Now time.Time `json:"now"`
	// Running reports a running XMPP server (Config.Server): Version,
	// Started, Devices and ActiveNow are only set then.
	Running bool `json:"running"`
	// Version is the server's software version (XEP-0092).
	Version string `json:"version,omitempty"`
	// Started is when the server started; UptimeSeconds is Now - Started
	// in whole seconds.
	Started       time.Time `json:"started,omitzero"`
	UptimeSeconds int64     `json:"uptime_seconds,omitempty"`
	// ResidentBytes is the process's resident set size (VmRSS of
	// /proc/self/status; 0 when unknown), HeapBytes the Go heap in use
	// (runtime.MemStats.HeapAlloc), SysBytes the memory Go took from the
	// system (MemStats.Sys).
	ResidentBytes int64 `json:"resident_bytes,omitempty"`
	HeapBytes     int64 `json:"heap_bytes"`
	SysBytes      int64 `json:"sys_bytes"`
	// Goroutines is the number of goroutines (background tasks).
	Goroutines int `json:"goroutines"`
	// Disk is the data directory's disk; nil without Config.DataDir.
	Disk *DiskStatus `json:"disk,omitempty"`
	// Uploads is the storage of shared files (XEP-0363); nil when it
	// could not be read.
	Uploads *UploadStatus `json:"uploads,omitempty"`
	// Accounts is the number of accounts (marked for deletion included).
	Accounts int `json:"accounts"`
	// Devices is the number of bound client sessions (resources).
	Devices int `json:"devices"`
	// ActiveNow, Active24h, Active7d and Active30d count the accounts
	// online now and active within the last 24 hours, 7 days and 30 days:
	// online now or their last session ended within the period
	// (XEP-0012 last activity).
	ActiveNow int `json:"active_now"`
	Active24h int `json:"active_24h"`
	Active7d  int `json:"active_7d"`
	Active30d int `json:"active_30d"`
}

// DiskStatus is the disk of the data directory.
type DiskStatus struct {
	// FreeBytes (for unprivileged users) and TotalBytes of the file
	// system holding the data directory; both -1 when unknown.
	FreeBytes  int64 `json:"free_bytes"`
	TotalBytes int64 `json:"total_bytes"`
	// DatabaseBytes is the size of the database (hearth.db with its -wal
	// and -shm files).
	DatabaseBytes int64 `json:"database_bytes"`
}

// UploadStatus is the storage of the uploaded files (XEP-0363).
type UploadStatus struct {
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// Uptime is how long the server has run (Now - Started); 0 when it does
// not run.
func (s SystemStatus) Uptime() time.Duration { return time.Duration(s.UptimeSeconds) * time.Second }

// Facts describes the figures in words, as the system page lists them:
// Version, Running for, Memory, Background tasks, Disk, Database, Shared
// files, Accounts, Connected devices (each only when known).
func (s SystemStatus) Facts() []Fact {
	var out []Fact
	add := func(label, value string) { out = append(out, Fact{Label: label, Value: value}) }
	if s.Running {
		add("Version", "Hearth "+s.Version)
		add("Running for", humanDuration(s.Now.Sub(s.Started))+" (since "+s.Started.Format("2 January 2006 15:04")+")")
	}
	mem := humanBytes(s.HeapBytes) + " in use by Hearth's data, " + humanBytes(s.SysBytes) + " taken from the system"
	if s.ResidentBytes > 0 {
		mem = humanBytes(s.ResidentBytes) + " resident (" + mem + ")"
	}
	add("Memory", mem)
	add("Background tasks", strconv.Itoa(s.Goroutines)+" goroutines")
	if d := s.Disk; d != nil {
		if d.TotalBytes >= 0 {
			add("Disk", humanBytes(d.FreeBytes)+" free of "+humanBytes(d.TotalBytes))
		} else {
			add("Disk", "unknown")
		}
		add("Database", humanBytes(d.DatabaseBytes))
	}
	if us := s.Uploads; us != nil {
		add("Shared files", strconv.FormatInt(us.Files, 10)+" files, "+humanBytes(us.Bytes))
	}
	add("Accounts", strconv.Itoa(s.Accounts))
	if s.Running {
		add("Connected devices", strconv.Itoa(s.Devices))
	}
	return out
}

// activity lists the active accounts per period for the system page;
// "online now" only when the server runs.
func (s SystemStatus) activity() []activity {
	out := []activity{{"online now", s.ActiveNow}, {"in the last 24 hours", s.Active24h},
		{"in the last 7 days", s.Active7d}, {"in the last 30 days", s.Active30d}}
	if !s.Running {
		out = out[1:]
	}
	return out
}

// ActiveFacts lists the active accounts per period in words, as the
// system page's "Active users" table: Label "online now" (only when the
// server runs), "in the last 24 hours", "in the last 7 days", "in the last
// 30 days"; Value the number of accounts.
func (s SystemStatus) ActiveFacts() []Fact {
	var out []Fact
	for _, a := range s.activity() {
		out = append(out, Fact{Label: a.Label, Value: strconv.Itoa(a.Users)})
	}
	return out
}

// Status reads the figures of the system page: version and uptime of the
// running server, memory, goroutines, disk and database (with
// Config.DataDir), uploaded files, accounts, connected devices and active
// accounts. A figure that cannot be read is left out (and logged), except
// the accounts: errors are those of listing them (a store error).
func (u *UI) Status(ctx context.Context) (SystemStatus, error) {
	st := SystemStatus{Now: u.now()}
	if srv := u.cfg.Server; srv != nil {
		st.Running, st.Version, st.Started = true, srv.Version(), srv.Started()
		st.UptimeSeconds = int64(st.Now.Sub(st.Started) / time.Second)
		st.Devices = srv.SessionCount()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.HeapBytes, st.SysBytes, st.ResidentBytes = int64(ms.HeapAlloc), int64(ms.Sys), processRSS()
	st.Goroutines = runtime.NumGoroutine()
	if dir := u.cfg.DataDir; dir != "" {
		d := &DiskStatus{FreeBytes: -1, TotalBytes: -1}
		if free, total, err := diskSpace(dir); err == nil {
			d.FreeBytes, d.TotalBytes = free, total
		} else {
			u.log.Warn("web: reading the disk space failed", "err", err)
		}
		db := filepath.Join(dir, "hearth.db")
		d.DatabaseBytes = fileSizes(db, db+"-wal", db+"-shm")
		st.Disk = d
	}
	if us, err := upload.Usage(ctx, u.cfg.Store); err == nil {
		st.Uploads = &UploadStatus{Files: us.Files, Bytes: us.Bytes}
	} else {
		u.log.Warn("web: reading the upload usage failed", "err", err)
	}
	accts, err := u.cfg.Store.Accounts(ctx)
	if err != nil {
		return SystemStatus{}, err
	}
	st.Accounts = len(accts)
	for _, a := range accts {
		online := u.cfg.Server != nil && len(u.cfg.Server.Sessions(a.Username)) > 0
		within := func(d time.Duration) int {
			if online || (!a.LastLogout.IsZero() && st.Now.Sub(a.LastLogout) <= d) {
				return 1
			}
			return 0
		}
		if online {
			st.ActiveNow++
		}
		st.Active24h += within(24 * time.Hour)
		st.Active7d += within(7 * 24 * time.Hour)
		st.Active30d += within(30 * 24 * time.Hour)
	}
	return st, nil
}

// systemPage is GET /admin/system: Status, then the certificate and
// dynamic DNS.
func (u *UI) systemPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	st, err := u.Status(ctx)
	if err != nil {
		u.log.Error("web: listing accounts failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	v := systemView{adminView: u.adminView(w, r, s), Facts: st.Facts(), Activity: st.activity()}
	for _, c := range []struct {
		title, off string
		f          StepFunc
	}{
		{"Certificate", "Not available: Hearth uses its own self-signed certificate.", u.cfg.CertStatus},
		{"Dynamic DNS", "Not available: the DNS records are kept by hand.", u.cfg.DomainStatus},
	} {
		sc := systemCheck{Title: c.title, Off: c.off}
		if c.f != nil {
			st := c.f(ctx)
			sc.Status = &st
		}
		v.Checks = append(v.Checks, sc)
	}
	u.render(w, r, http.StatusOK, systemPage(v))
}
