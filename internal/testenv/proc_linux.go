package testenv

import (
	"os/exec"
	"syscall"
)

// DieWithParent makes the process cmd starts get SIGKILL when the test's
// process dies, so that a test binary killed, say by its timeout, before
// its cleanups ran leaves no server or notifier behind.
func DieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
