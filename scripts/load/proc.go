package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux
// for every architecture Go supports).
const clockTicks = 100

// rssKiB returns VmRSS of pid from /proc/<pid>/status, in KiB (proc(5)).
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(string(f[0]), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// sumRSS sums rssKiB over pids.
func sumRSS(pids []int) (int64, error) {
	var total int64
	for _, p := range pids {
		v, err := rssKiB(p)
		if err != nil {
			return 0, err
		}
		total += v
	}
	return total, nil
}

// cpuSeconds returns the user+system CPU time of pid (fields 14 and 15 of
// /proc/<pid>/stat, proc(5)).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(u+s) / clockTicks, nil
}

// sumCPU sums cpuSeconds over pids; unreadable pids count as 0.
func sumCPU(pids []int) float64 {
	var t float64
	for _, p := range pids {
		if v, err := cpuSeconds(p); err == nil {
			t += v
		}
	}
	return t
}

// selfCPU returns this process's user+system CPU time.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// cpuMeter measures CPU seconds used by the client and the servers over a
// phase.
type cpuMeter struct {
	pids         []int
	self, server float64
	wall         time.Time
}

func startCPU(pids []int) cpuMeter {
	return cpuMeter{pids: pids, self: selfCPU(), server: sumCPU(pids), wall: time.Now()}
}

// record adds the phase's CPU figures to details: client_cpu_s,
// server_cpu_s (if pids were given) and their shares of the wall time.
func (m cpuMeter) record(details map[string]any, prefix string) {
	wall := time.Since(m.wall).Seconds()
	c := selfCPU() - m.self
	details[prefix+"client_cpu_s"] = round3(c)
	if wall > 0 {
		details[prefix+"client_cores"] = round3(c / wall)
	}
	if len(m.pids) > 0 {
		s := sumCPU(m.pids) - m.server
		details[prefix+"server_cpu_s"] = round3(s)
		if wall > 0 {
			details[prefix+"server_cores"] = round3(s / wall)
		}
	}
}
