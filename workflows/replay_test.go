package workflows_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"

	"github.com/barfinex/notifier/workflows"
)

// TestReplay replays histories captured from a real server (`make
// histories`) against today's workflow code. It fails when a change to a
// workflow would break executions already running.
func TestReplay(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no captured histories; run `make histories`")
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			replayer := worker.NewWorkflowReplayer()
			replayer.RegisterWorkflow(workflows.EventWorkflow)
			replayer.RegisterWorkflow(workflows.DeliveryWorkflow)
			replayer.RegisterWorkflow(workflows.PingWorkflow)
			replayer.RegisterWorkflow(workflows.AlertRuleWorkflow)
			replayer.RegisterWorkflow(workflows.ServiceMonitorWorkflow)
			require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, file))
		})
	}
}
