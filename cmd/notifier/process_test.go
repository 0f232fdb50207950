package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier/internal/testenv"
)

// childRoleEnv, set in a test binary's environment, makes the binary run as
// `notifier <role>` instead of running tests: startProcess starts the
// notifier that way, as a process that can be killed.
const childRoleEnv = "NOTIFIER_TEST_CHILD_ROLE"

// runChild does what main does for the given role and returns the exit code.
func runChild(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, []string{role}, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "notifier:", err)
		return 1
	}
	return 0
}

// startProcess starts the test binary as the stack's notifier process. It
// sees only the stack's NOTIFIER_ and TEMPORAL_ variables, as the stack run
// in the test's process does.
func (s *stack) startProcess() {
	exe, err := os.Executable()
	require.NoError(s.t, err)
	cmd := exec.Command(exe)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFIER_") && !strings.HasPrefix(kv, "TEMPORAL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, childRoleEnv+"="+s.role)
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = &s.logs, &s.logs
	testenv.DieWithParent(cmd)
	require.NoError(s.t, cmd.Start())
	s.cmd = cmd
	done := s.done
	go func() { done <- cmd.Wait() }()
}

// kill ends the stack's process at once, as kill -9 does: no shutdown, no
// activity finished, nothing reported to Temporal.
func (s *stack) kill() {
	s.t.Helper()
	require.True(s.t, s.proc, "kill needs a stack started by startProcess")
	if s.stopped {
		return
	}
	s.stopped = true
	require.NoError(s.t, s.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case err := <-s.done:
		var exit *exec.ExitError
		require.True(s.t, errors.As(err, &exit), "the notifier exited with %v", err)
		ws, ok := exit.Sys().(syscall.WaitStatus)
		require.True(s.t, ok && ws.Signal() == syscall.SIGKILL, "the notifier exited with %v", err)
	case <-time.After(30 * time.Second):
		s.t.Fatal("the notifier did not die of SIGKILL within 30s")
	}
}
