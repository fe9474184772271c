//go:build bench

package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailintake/mailintake/internal/fakes/dovecot"
)

// The CPU figures: this process's own (the floor and the Go consumer), a process with its
// children (mailintaked and its auth plugins), and one private Dovecot instance (its master,
// its service processes, and those that have exited: the master waits for them, so their CPU
// is its children's).

// selfCPU returns the CPU seconds this process has used.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// childrenOf returns the processes whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if ppid, _, _, err := ProcTimes(child); err == nil && ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// treeCPU returns the CPU seconds used by pid, its running children and its children that have
// exited. A child that exits while the tree is read is counted once: the reading is repeated
// when the root's children's time moved meanwhile.
func treeCPU(pid int) float64 {
	sum := 0.0
	for range 5 {
		_, self, reaped, err := ProcTimes(pid)
		if err != nil {
			return 0
		}
		sum = self + reaped
		for _, c := range childrenOf(pid) {
			if _, s, r, err := ProcTimes(c); err == nil {
				sum += s + r
			}
		}
		if _, _, again, _ := ProcTimes(pid); again == reaped {
			break
		}
	}
	return sum
}

// dovecotMaster returns the pid of the instance's master process: the dovecot process whose
// command line names a file in the instance's directory.
func dovecotMaster(dv *dovecot.Server) int {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dv.Dir+"/") {
			continue
		}
		if comm, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "comm")); strings.TrimSpace(string(comm)) == "dovecot" {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	return 0
}

// dovecotCPU returns the CPU seconds one Dovecot instance has used so far (0 when its master is
// not found). Only this instance is counted, not any other Dovecot on the machine.
func dovecotCPU(dv *dovecot.Server) float64 {
	if pid := dovecotMaster(dv); pid > 0 {
		return treeCPU(pid)
	}
	return 0
}
