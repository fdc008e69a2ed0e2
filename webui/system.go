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

// activeUsers counts the accounts with a session now and within each of
// the periods: an account was active in a period when it is online now or
// its last session ended within it (XEP-0012 last activity).
func (u *UI) activeUsers(ctx context.Context) ([]activity, int, error) {
	accts, err := u.cfg.Store.Accounts(ctx)
	if err != nil {
		return nil, 0, err
	}
	periods := []struct {
		label string
		d     time.Duration
	}{{"in the last 24 hours", 24 * time.Hour}, {"in the last 7 days", 7 * 24 * time.Hour}, {"in the last 30 days", 30 * 24 * time.Hour}}
	out := []activity{{Label: "online now"}}
	for _, p := range periods {
		out = append(out, activity{Label: p.label})
	}
	now := u.now()
	for _, a := range accts {
		online := u.cfg.Server != nil && len(u.cfg.Server.Sessions(a.Username)) > 0
		if online {
			out[0].Users++
		}
		for i, p := range periods {
			if online || (!a.LastLogout.IsZero() && now.Sub(a.LastLogout) <= p.d) {
				out[i+1].Users++
			}
		}
	}
	return out, len(accts), nil
}

// systemPage is GET /admin/system: version, uptime, memory, disk, uploads,
// accounts and activity, certificate and dynamic DNS.
func (u *UI) systemPage(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := r.Context()
	v := systemView{adminView: u.adminView(w, r, s)}
	add := func(label, value string) { v.Facts = append(v.Facts, Fact{Label: label, Value: value}) }
	if srv := u.cfg.Server; srv != nil {
		add("Version", "Hearth "+srv.Version())
		add("Running for", humanDuration(u.now().Sub(srv.Started()))+" (since "+srv.Started().Format("2 January 2006 15:04")+")")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mem := humanBytes(int64(ms.HeapAlloc)) + " in use by Hearth's data, " + humanBytes(int64(ms.Sys)) + " taken from the system"
	if rss := processRSS(); rss > 0 {
		mem = humanBytes(rss) + " resident (" + mem + ")"
	}
	add("Memory", mem)
	add("Background tasks", strconv.Itoa(runtime.NumGoroutine())+" goroutines")
	if dir := u.cfg.DataDir; dir != "" {
		if free, total, err := diskSpace(dir); err == nil {
			add("Disk", humanBytes(free)+" free of "+humanBytes(total))
		} else {
			u.log.Warn("web: reading the disk space failed", "err", err)
			add("Disk", "unknown")
		}
		db := filepath.Join(dir, "hearth.db")
		add("Database", humanBytes(fileSizes(db, db+"-wal", db+"-shm")))
	}
	if us, err := upload.Usage(ctx, u.cfg.Store); err == nil {
		add("Shared files", strconv.FormatInt(us.Files, 10)+" files, "+humanBytes(us.Bytes))
	} else {
		u.log.Warn("web: reading the upload usage failed", "err", err)
	}
	act, accounts, err := u.activeUsers(ctx)
	if err != nil {
		u.log.Error("web: listing accounts failed", "err", err)
		u.message(w, r, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	add("Accounts", strconv.Itoa(accounts))
	if u.cfg.Server != nil {
		add("Connected devices", strconv.Itoa(u.cfg.Server.SessionCount()))
		v.Activity = act
	} else {
		v.Activity = act[1:]
	}
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
