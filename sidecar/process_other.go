//go:build !linux

package sidecar

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts the sidecar in its own process group, so Stop and Kill signal the group. There is no Pdeathsig
// outside Linux: a sidecar outlives a gateway killed with SIGKILL there, and the next start reports its port taken.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// startTied starts cmd; nothing ties the process to a thread outside Linux.
func startTied(cmd *exec.Cmd, _ <-chan struct{}) error { return cmd.Start() }
