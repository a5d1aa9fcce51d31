package sidecar

import (
	"os/exec"
	"runtime"
	"syscall"
)

// sysProcAttr puts the sidecar in its own process group (Stop and Kill signal the group) and asks the kernel to
// SIGKILL it when its parent dies (Pdeathsig), so a gateway killed with SIGKILL leaves no sidecar holding its port
// and its devices.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// startTied starts cmd from a goroutine locked to its OS thread that keeps the thread until the process has
// exited (done closed). Pdeathsig fires when the thread that forked the child ends, not the process: the Go
// runtime ends a thread when a goroutine locked to it returns, so a fork from an ordinary goroutine could in rare
// cases kill the sidecar long before the gateway dies. One parked thread per launched sidecar is the price.
func startTied(cmd *exec.Cmd, done <-chan struct{}) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := cmd.Start()
		started <- err
		if err != nil {
			runtime.UnlockOSThread() // nothing was forked: the thread may serve others
			return
		}
		<-done
		// Returning while locked ends the thread, which is what Pdeathsig watches; the child has exited by now.
	}()
	return <-started
}
