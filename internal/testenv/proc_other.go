//go:build !linux

package testenv

import "os/exec"

// DieWithParent does nothing here: only Linux ties a process's life to its
// parent's.
func DieWithParent(cmd *exec.Cmd) {}
