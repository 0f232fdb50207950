package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// result is one row of the table.
type result struct {
	name       string
	deliveries int
	elapsed    time.Duration
	rate       float64
	duplicates int
	// Latencies at the offered rate, publish (or start) to receive.
	offered       float64
	p50, p95, p99 time.Duration
	serverCPU     float64
	workerCPU     float64
	workerHWM     float64
	// firstAttemptP50/P99 are the notifier's own publish→first attempt
	// figures, from its /metrics.
	firstAttemptP50, firstAttemptP99 float64
	metricsDelivered                 float64
}

func (r *result) summary() string {
	return fmt.Sprintf("%.0f deliveries/s; at %s/s p50 %s ms, p99 %s ms; "+
		"server CPU %s s, worker CPU %.1f s",
		r.rate, num(r.offered, 0), ms(r.p50), ms(r.p99), num(r.serverCPU, 1), r.workerCPU)
}

// eventTypes are the types the rows publish, one per fan-out width, so that
// each row's webhooks get only that row's events.
var eventTypes = []string{"order.filled", "order.placed", "deployment.created",
	"deployment.updated"}

func runThroughput(ctx context.Context, s *stack, o *options, stdout io.Writer) error {
	var rows []*result
	var deliveryID string
	for i, m := range o.fanouts {
		if i >= len(eventTypes) {
			return fmt.Errorf("BENCH_FANOUT: at most %d widths", len(eventTypes))
		}
		fmt.Fprintf(stdout, "bench: notifier, %d events to %d webhook(s)\n", o.events, m)
		r, id, err := benchNotifier(ctx, s, o, m, eventTypes[i], fmt.Sprintf("m%d", m))
		if err != nil {
			return err
		}
		rows = append(rows, r)
		fmt.Fprintln(stdout, "  ", r.summary())
		if m == 1 || deliveryID == "" {
			deliveryID = id
		}
	}
	naive := &result{name: "naive: skipped", rate: math.NaN(), serverCPU: math.NaN(),
		workerHWM: math.NaN(), p50: -1, p95: -1, p99: -1, deliveries: 1}
	direct := &result{name: "direct: skipped", rate: math.NaN(), serverCPU: math.NaN(),
		workerHWM: math.NaN(), p50: -1, p95: -1, p99: -1, deliveries: 1}
	if !o.skipReferences {
		fmt.Fprintf(stdout, "bench: naive reference, %d deliveries\n", o.events)
		var err error
		if naive, err = benchNaive(ctx, s, o); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "  ", naive.summary())
		fmt.Fprintf(stdout, "bench: direct reference, %d deliveries\n", o.events)
		if direct, err = benchDirect(ctx, o); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "  ", direct.summary())
	}

	deliveryEvents, err := historyLength(ctx, s.tc, deliveryID)
	if err != nil {
		return err
	}
	fanOutEvents, fanOutWidth, err := eventWorkflowHistory(ctx, s)
	if err != nil {
		return err
	}
	rep := &report{rows: rows, naive: naive, direct: direct, o: o,
		deliveryEvents: deliveryEvents, fanOutEvents: fanOutEvents, fanOutWidth: fanOutWidth}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, rep.table())
	if o.out != "" {
		return rep.write(o.out)
	}
	return nil
}

// benchNotifier measures the notifier publishing to m webhooks: saturation,
// then latency at half that rate. It returns a delivery id of the row.
func benchNotifier(ctx context.Context, s *stack, o *options, m int,
	typ, tag string) (*result, string, error) {
	rs, err := newReceivers(m)
	if err != nil {
		return nil, "", err
	}
	defer rs.close()
	var webhookID string
	for _, u := range rs.urls {
		if webhookID, err = s.createWebhook(ctx, u, typ); err != nil {
			return nil, "", err
		}
	}
	publish := func(id string, n int) error { return s.publish(ctx, id, typ, n) }

	// A short warm-up: connections, caches and the worker's first polls.
	warm := 50
	done := rs.reset(warm * m)
	if err := closedLoop(ctx, warm, o.concurrency, func(i int) error {
		return publish(fmt.Sprintf("bench-%s-warm-%d", tag, i), i)
	}); err != nil {
		return nil, "", err
	}
	if err := waitArrivals(ctx, done, 2*time.Minute, rs); err != nil {
		return nil, "", err
	}

	r := &result{name: fmt.Sprintf("notifier, fan-out to %d", m), deliveries: o.events * m}
	before, err := settledMetrics(ctx, s.api+"/metrics")
	if err != nil {
		return nil, "", err
	}
	cpu0 := [2]float64{cpuSeconds(s.temporal.cmd.Process.Pid), cpuSeconds(s.notifier.cmd.Process.Pid)}
	done = rs.reset(o.events * m)
	start := time.Now()
	if err := closedLoop(ctx, o.events, o.concurrency, func(i int) error {
		return publish(fmt.Sprintf("bench-%s-%d", tag, i), i)
	}); err != nil {
		return nil, "", err
	}
	if err := waitArrivals(ctx, done, 10*time.Minute, rs); err != nil {
		return nil, "", err
	}
	arr, total := rs.arrivals()
	r.elapsed = lastArrival(arr).Sub(start)
	r.rate = float64(r.deliveries) / r.elapsed.Seconds()
	r.duplicates = total - len(arr)
	r.serverCPU = cpuSeconds(s.temporal.cmd.Process.Pid) - cpu0[0]
	r.workerCPU = cpuSeconds(s.notifier.cmd.Process.Pid) - cpu0[1]
	after, err := settledMetrics(ctx, s.api+"/metrics")
	if err != nil {
		return nil, "", err
	}
	r.metricsDelivered = after.sum("notifier_deliveries_total", `outcome="succeeded"`) -
		before.sum("notifier_deliveries_total", `outcome="succeeded"`)

	// Latency below saturation: events at a fixed rate, open loop, once
	// the server has worked off what the saturation run left queued.
	waitQuiet(ctx, s.temporal.cmd.Process.Pid)
	r.offered = r.rate / 2
	eventsPerSec := r.offered / float64(m)
	n := int(math.Max(20, eventsPerSec*o.latencyFor.Seconds()))
	sent := make([]time.Time, n)
	done = rs.reset(n * m)
	before = after
	err = openLoop(ctx, n, eventsPerSec, func(i int) error {
		sent[i] = time.Now()
		return publish(fmt.Sprintf("bench-%s-lat-%d", tag, i), i)
	})
	if err != nil {
		return nil, "", err
	}
	if err := waitArrivals(ctx, done, 5*time.Minute, rs); err != nil {
		return nil, "", err
	}
	arr, _ = rs.arrivals()
	lat := make([]time.Duration, 0, len(arr))
	for k, at := range arr {
		var i int
		if _, err := fmt.Sscanf(k.eventID, "bench-"+tag+"-lat-%d", &i); err == nil && i < n {
			lat = append(lat, at.Sub(sent[i]))
		}
	}
	r.p50, r.p95, r.p99 = percentiles(lat)
	if after, err = settledMetrics(ctx, s.api+"/metrics"); err != nil {
		return nil, "", err
	}
	saveMetrics(ctx, s.api+"/metrics", filepath.Join(s.dir, "metrics-"+tag+".txt"))
	const firstAttempt = "notifier_delivery_first_attempt_delay_seconds"
	r.firstAttemptP50 = quantile(before, after, firstAttempt, 0.5)
	r.firstAttemptP99 = quantile(before, after, firstAttempt, 0.99)
	r.workerHWM = memMiB(s.notifier.cmd.Process.Pid, "VmHWM")
	return r, notifier.DeliveryID(fmt.Sprintf("bench-%s-0", tag), webhookID), nil
}

// benchNaive measures the naive reference on the same server, with its own
// worker process.
func benchNaive(ctx context.Context, s *stack, o *options) (*result, error) {
	rs, err := newReceivers(1)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	w, err := s.ps.start(s.dir, "naive-worker", self, []string{
		"TEMPORAL_ADDRESS=" + s.address, fmt.Sprintf("BENCH_POLLERS=%d", o.pollers)}, "naive-worker")
	if err != nil {
		return nil, err
	}
	defer w.stop(20 * time.Second)
	body := []byte(`{"id":"x","type":"order.filled",` +
		`"timestamp":"2026-03-27T12:00:00.000Z","data":{"symbol":"BTCUSDT"}}`)
	start := func(id string) error {
		_, err := s.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: id, TaskQueue: naiveTaskQueue,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		}, NaiveDelivery, PostInput{URL: rs.urls[0], EventID: id, Body: body})
		return err
	}

	warm := 50
	done := rs.reset(warm)
	if err := closedLoop(ctx, warm, o.concurrency, func(i int) error {
		return start(fmt.Sprintf("naive-warm-%d", i))
	}); err != nil {
		return nil, err
	}
	if err := waitArrivals(ctx, done, 2*time.Minute, rs); err != nil {
		return nil, err
	}

	r := &result{name: "naive: workflow + activity", deliveries: o.events}
	cpu0 := [2]float64{cpuSeconds(s.temporal.cmd.Process.Pid), cpuSeconds(w.cmd.Process.Pid)}
	done = rs.reset(o.events)
	t0 := time.Now()
	if err := closedLoop(ctx, o.events, o.concurrency, func(i int) error {
		return start(fmt.Sprintf("naive-%d", i))
	}); err != nil {
		return nil, err
	}
	if err := waitArrivals(ctx, done, 15*time.Minute, rs); err != nil {
		return nil, err
	}
	arr, total := rs.arrivals()
	r.elapsed = lastArrival(arr).Sub(t0)
	r.rate = float64(r.deliveries) / r.elapsed.Seconds()
	r.duplicates = total - len(arr)
	r.serverCPU = cpuSeconds(s.temporal.cmd.Process.Pid) - cpu0[0]
	r.workerCPU = cpuSeconds(w.cmd.Process.Pid) - cpu0[1]

	waitQuiet(ctx, s.temporal.cmd.Process.Pid)
	r.offered = r.rate / 2
	n := int(math.Max(20, r.offered*o.latencyFor.Seconds()))
	sent := make([]time.Time, n)
	done = rs.reset(n)
	if err := openLoop(ctx, n, r.offered, func(i int) error {
		sent[i] = time.Now()
		return start(fmt.Sprintf("naive-lat-%d", i))
	}); err != nil {
		return nil, err
	}
	if err := waitArrivals(ctx, done, 5*time.Minute, rs); err != nil {
		return nil, err
	}
	arr, _ = rs.arrivals()
	lat := make([]time.Duration, 0, n)
	for k, at := range arr {
		var i int
		if _, err := fmt.Sscanf(k.eventID, "naive-lat-%d", &i); err == nil && i < n {
			lat = append(lat, at.Sub(sent[i]))
		}
	}
	r.p50, r.p95, r.p99 = percentiles(lat)
	r.workerHWM = memMiB(w.cmd.Process.Pid, "VmHWM")
	return r, nil
}

// benchDirect sends the same POSTs from a plain worker pool in this process.
func benchDirect(ctx context.Context, o *options) (*result, error) {
	rs, err := newReceivers(1)
	if err != nil {
		return nil, err
	}
	defer rs.close()
	body := bytes.Repeat([]byte("x"), 160)
	post := func(id string) error {
		return Post(ctx, PostInput{URL: rs.urls[0], EventID: id, Body: body})
	}
	r := &result{name: "direct: Go worker pool", deliveries: o.events}
	runtime.GC()
	cpu0 := cpuSeconds(os.Getpid())
	done := rs.reset(o.events)
	t0 := time.Now()
	if err := closedLoop(ctx, o.events, o.concurrency, func(i int) error {
		return post(fmt.Sprintf("direct-%d", i))
	}); err != nil {
		return nil, err
	}
	if err := waitArrivals(ctx, done, time.Minute, rs); err != nil {
		return nil, err
	}
	arr, total := rs.arrivals()
	r.elapsed = lastArrival(arr).Sub(t0)
	r.rate = float64(r.deliveries) / r.elapsed.Seconds()
	r.duplicates = total - len(arr)
	// The pool and the receiver share this process.
	r.workerCPU = cpuSeconds(os.Getpid()) - cpu0
	r.serverCPU, r.workerHWM, r.offered = math.NaN(), math.NaN(), math.NaN()
	r.p50, r.p95, r.p99 = -1, -1, -1
	return r, nil
}

// saveMetrics keeps the notifier's metrics beside its log, for a look at
// the SDK's own figures when BENCH_KEEP is set.
func saveMetrics(ctx context.Context, url, path string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if f, err := os.Create(path); err == nil {
		_, _ = io.Copy(f, resp.Body)
		f.Close()
	}
}

// waitQuiet waits, at most 2 minutes, until a process uses less than a
// tenth of a core: after a saturation run, the server goes on with its
// queues (visibility, transfers) well after the last delivery arrived.
func waitQuiet(ctx context.Context, pid int) {
	deadline := time.Now().Add(2 * time.Minute)
	last := cpuSeconds(pid)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		now := cpuSeconds(pid)
		if now-last < 0.2 {
			return
		}
		last = now
	}
}

// closedLoop runs do(0…n-1) on conc goroutines, each starting its next call
// when the last one returns.
func closedLoop(ctx context.Context, n, conc int, do func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := do(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// openLoop starts do(i) at i/rate seconds from now, whatever the calls
// before it are doing, and waits for every call.
func openLoop(ctx context.Context, n int, rate float64, do func(i int) error) error {
	var wg sync.WaitGroup
	var first atomic.Value
	t0 := time.Now()
	for i := range n {
		at := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		select {
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		case <-time.After(time.Until(at)):
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := do(i); err != nil {
				first.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return err
	}
	return nil
}

func waitArrivals(ctx context.Context, done <-chan struct{}, within time.Duration,
	rs *receivers) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(within):
		arr, _ := rs.arrivals()
		return fmt.Errorf("only %d of %d deliveries arrived within %s", len(arr), rs.want, within)
	}
}

func lastArrival(arr map[arrivalKey]time.Time) time.Time {
	var last time.Time
	for _, at := range arr {
		if at.After(last) {
			last = at
		}
	}
	return last
}

func percentiles(d []time.Duration) (p50, p95, p99 time.Duration) {
	if len(d) == 0 {
		return -1, -1, -1
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return at(0.50), at(0.95), at(0.99)
}

// historyLength counts the events in a closed workflow's history.
func historyLength(ctx context.Context, tc client.Client, workflowID string) (int, error) {
	iter := tc.GetWorkflowHistory(ctx, workflowID, "", false,
		enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for iter.HasNext() {
		if _, err := iter.Next(); err != nil {
			return 0, fmt.Errorf("history of %s: %w", workflowID, err)
		}
		n++
	}
	return n, nil
}

// eventWorkflowHistory fans an event out through the EventWorkflow, the
// path of events that the notifier itself stores (alerts): it stores an
// event for the widest row's type straight into the notifier's store, runs
// the workflow and counts its history's events.
func eventWorkflowHistory(ctx context.Context, s *stack) (events, width int, err error) {
	store, err := sqlstore.OpenSQLite(ctx, s.dir+"/notifier/notifier.db")
	if err != nil {
		return 0, 0, err
	}
	defer store.Close()
	typ := notifier.EventType(eventTypes[0])
	width = 1
	for i := range eventTypes {
		var n int
		if n, err = subscribers(ctx, s, eventTypes[i]); err != nil {
			return 0, 0, err
		}
		if n > width {
			typ, width = notifier.EventType(eventTypes[i]), n
		}
	}
	ev, err := notifier.NewEvent("bench-fanout", typ, nil, []byte(`{"symbol":"BTCUSDT"}`), time.Now())
	if err != nil {
		return 0, 0, err
	}
	body, err := ev.Envelope()
	if err != nil {
		return 0, 0, err
	}
	if _, _, err := store.CreateEvent(ctx, ev, body); err != nil {
		return 0, 0, err
	}
	run, err := s.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.EventWorkflowID(ev.ID), TaskQueue: s.taskQueue,
	}, workflows.EventWorkflow, workflows.EventInput{EventID: ev.ID, EventType: ev.Type})
	if err != nil {
		return 0, 0, err
	}
	if err := run.Get(ctx, nil); err != nil {
		return 0, 0, err
	}
	events, err = historyLength(ctx, s.tc, run.GetID())
	return events, width, err
}

// subscribers counts the webhooks subscribed to an event type.
func subscribers(ctx context.Context, s *stack, typ string) (int, error) {
	var page struct {
		Items []struct {
			Events []string `json:"events"`
		} `json:"items"`
	}
	code, err := s.call(ctx, http.MethodGet, "/v1/webhooks?limit=100", nil, &page)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("list webhooks: status %d", code)
	}
	n := 0
	for _, w := range page.Items {
		for _, e := range w.Events {
			if e == typ {
				n++
			}
		}
	}
	return n, nil
}
