//go:build !unix

package authplugintest

import "os/exec"

// command prepares a provider's process.
func command(path string) *exec.Cmd { return exec.Command(path) }

// killGroup does nothing where process groups are not available.
func killGroup(*exec.Cmd) {}
