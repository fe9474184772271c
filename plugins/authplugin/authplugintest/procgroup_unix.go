//go:build unix

package authplugintest

import (
	"os/exec"
	"syscall"
	"time"
)

// command prepares a provider's process in a process group of its own, as the server does, so
// that stopping it stops what it started (a script provider's interpreter) too.
func command(path string) *exec.Cmd {
	cmd := exec.Command(path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// killGroup kills the process group of a provider started by command.
func killGroup(cmd *exec.Cmd) {
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
