//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// processCPU is the CPU time used so far by every thread of process pid:
// clock_gettime on its process CPU-time clock (Linux's
// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)), the nanosecond-resolution
// form of utime+stime in /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, error) {
	clock := ^int32(pid)<<3 | 2
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0, fmt.Errorf("clock_gettime(cpu clock of %d): %v", pid, errno)
	}
	return time.Duration(ts.Nano()), nil
}

// statUserSys is utime and stime of pid from /proc/<pid>/stat, in clock
// ticks (10 ms).
func statUserSys(pid int) (utime, stime int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat: %q", pid, s)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat: %q", pid, s)
	}
	return utime, stime, nil
}

// machineBusy is the CPU time all cores spent on anything but idle and
// iowait so far (plus steal: time a hypervisor gave someone else), from
// /proc/stat, at 10 ms resolution.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("parsing /proc/stat: %q", line)
	}
	var busy int64
	// user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond, nil
}

// rss is the resident set size of pid, from /proc/<pid>/status.
func rss(pid int) int64 { return statusKB(pid, "VmRSS") }

// rssNote is pid's resident set size with its anonymous and file-backed
// parts: bbolt maps its file, and the pages of it that were read count as
// resident (clean page cache, given back under memory pressure).
func rssNote(pid int) string {
	return fmt.Sprintf("%.0f MB (anonymous %.0f MB, file-backed %.0f MB)",
		float64(rss(pid))/1e6, float64(statusKB(pid, "RssAnon"))/1e6, float64(statusKB(pid, "RssFile"))/1e6)
}

// statusKB is the field of /proc/<pid>/status counted in kB, in bytes.
func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n * 1024
		}
	}
	return 0
}
