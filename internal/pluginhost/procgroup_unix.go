//go:build unix

package pluginhost

import (
	"os/exec"
	"syscall"
	"time"
)

// command prepares a provider's process in a process group of its own, so that stopping it
// stops what it started too: a script provider (a shell wrapper that runs node or python)
// otherwise leaves its interpreter running, holding the output pipes open, and the host
// waiting for them.
func command(path string) *exec.Cmd {
	cmd := exec.Command(path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A process that exited but left a child holding its output open does not keep Wait
	// (and whoever stops the provider) waiting for long.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// killGroup kills the process group of a provider started by command.
func killGroup(cmd *exec.Cmd) {
	if cmd != nil && cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
