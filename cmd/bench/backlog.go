package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.temporal.io/api/workflowservice/v1"
)

// runBacklog leaves o.backlog deliveries waiting in backoff against receivers
// that refuse every connection, and reports the memory the worker and the
// server then hold.
func runBacklog(ctx context.Context, s *stack, o *options, stdout io.Writer) error {
	const width = 10
	typ := eventTypes[0]
	for range width {
		port, err := freePort() // nothing listens there: every attempt is refused
		if err != nil {
			return err
		}
		if _, err := s.createWebhook(ctx, fmt.Sprintf("http://127.0.0.1:%d/hook", port),
			typ); err != nil {
			return err
		}
	}
	idle := [2]float64{memMiB(s.notifier.cmd.Process.Pid, "VmRSS"),
		memMiB(s.temporal.cmd.Process.Pid, "VmRSS")}
	events := (o.backlog + width - 1) / width
	want := float64(events * width)
	fmt.Fprintf(stdout, "bench: backlog of %.0f deliveries (%d events to %d dead receivers)\n",
		want, events, width)
	start := time.Now()
	if err := closedLoop(ctx, events, o.concurrency, func(i int) error {
		return s.publish(ctx, fmt.Sprintf("bench-backlog-%d", i), typ, i)
	}); err != nil {
		return err
	}
	for {
		m, err := readMetrics(ctx, s.api+"/metrics")
		if err != nil {
			return err
		}
		if m.sum("notifier_delivery_attempts_total") >= want {
			break
		}
		if time.Since(start) > 15*time.Minute {
			return fmt.Errorf("backlog: only %.0f of %.0f first attempts made",
				m.sum("notifier_delivery_attempts_total"), want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	filled := time.Since(start)
	// Let the last workflow tasks settle before reading memory.
	time.Sleep(5 * time.Second)
	waiting, err := s.tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Namespace: "default",
		Query:     `WorkflowType="DeliveryWorkflow" AND ExecutionStatus="Running"`,
	})
	if err != nil {
		return err
	}
	np, tp := s.notifier.cmd.Process.Pid, s.temporal.cmd.Process.Pid
	body := fmt.Sprintf("%d deliveries waiting in backoff (first attempt refused, next one 30 min "+
		"away), reached in %.0f s.\n\n"+
		"| process | RSS before MiB | RSS with the backlog MiB | peak RSS MiB |\n"+
		"| --- | ---: | ---: | ---: |\n"+
		"| notifier (API and worker) | %.0f | %.0f | %.0f |\n"+
		"| Temporal dev server | %.0f | %.0f | %.0f |\n",
		waiting.Count, filled.Seconds(),
		idle[0], memMiB(np, "VmRSS"), memMiB(np, "VmHWM"),
		idle[1], memMiB(tp, "VmRSS"), memMiB(tp, "VmHWM"))
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, body)
	if o.out == "" {
		return nil
	}
	cmd := "make bench-backlog"
	if o.backlog != 10000 {
		cmd = fmt.Sprintf("BENCH_BACKLOG=%d %s", o.backlog, cmd)
	}
	return replaceSection(o.out, "backlog", machine()+"Command: `"+cmd+"`\n\n"+body)
}
