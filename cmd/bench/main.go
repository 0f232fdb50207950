// Command bench measures the notifier's delivery throughput and latency
// against two references on the same machine: the naive shape of a delivery
// on Temporal (one workflow, one ordinary activity) on the same dev server,
// and the same POSTs from a plain Go worker pool with no engine. `make
// bench` runs it; `make bench-backlog` runs its memory-under-backlog
// measurement. It starts every process it needs on free loopback ports and
// a data directory of its own, and stops them however it ends.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "naive-worker" {
		pollers, _ := strconv.Atoi(os.Getenv("BENCH_POLLERS"))
		if err := runNaiveWorker(os.Getenv("TEMPORAL_ADDRESS"), pollers); err != nil {
			fmt.Fprintln(os.Stderr, "naive worker:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the benchmark's settings, from BENCH_* variables.
type options struct {
	events      int
	fanouts     []int
	concurrency int
	latencyFor  time.Duration
	timeout     time.Duration
	out         string
	backlog     int
	pollers     int
	keep        bool
	// notifier is the binary to measure, bin/notifier unless BENCH_NOTIFIER
	// names another (to compare two builds).
	notifier string
	// skipReferences leaves out the naive and direct rows
	// (BENCH_REFERENCES=false), to compare notifier builds quickly.
	skipReferences bool
}

func loadOptions(getenv func(string) string) (*options, error) {
	o := &options{fanouts: []int{1, 10}, out: "docs/benchmarks.md"}
	ints := []struct {
		key string
		dst *int
		def int
	}{
		{"BENCH_EVENTS", &o.events, 2000},
		{"BENCH_CONCURRENCY", &o.concurrency, 32},
		{"BENCH_BACKLOG", &o.backlog, 10000},
		{"NOTIFIER_WORKFLOW_POLLERS", &o.pollers, 16},
	}
	for _, v := range ints {
		*v.dst = v.def
		if s := getenv(v.key); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("%s: want a positive whole number, got %q", v.key, s)
			}
			*v.dst = n
		}
	}
	durations := []struct {
		key string
		dst *time.Duration
		def time.Duration
	}{
		{"BENCH_LATENCY_DURATION", &o.latencyFor, 20 * time.Second},
		{"BENCH_TIMEOUT", &o.timeout, 20 * time.Minute},
	}
	for _, v := range durations {
		*v.dst = v.def
		if s := getenv(v.key); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("%s: want a duration like 20s, got %q", v.key, s)
			}
			*v.dst = d
		}
	}
	if s := getenv("BENCH_FANOUT"); s != "" {
		o.fanouts = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 || n > 50 {
				return nil, fmt.Errorf("BENCH_FANOUT: want webhook counts like 1,10 (at most 50), got %q", s)
			}
			o.fanouts = append(o.fanouts, n)
		}
	}
	if v, ok := lookup(getenv, "BENCH_OUT"); ok {
		o.out = v
	}
	o.keep = getenv("BENCH_KEEP") == "true"
	o.notifier = getenv("BENCH_NOTIFIER")
	o.skipReferences = getenv("BENCH_REFERENCES") == "false"
	return o, nil
}

func lookup(getenv func(string) string, key string) (string, bool) {
	if v := getenv(key); v != "" {
		return v, true
	}
	_, ok := os.LookupEnv(key)
	return "", ok
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o, err := loadOptions(getenv)
	if err != nil {
		return err
	}
	mode := "throughput"
	if len(args) > 0 {
		mode = args[0]
	}
	if mode != "throughput" && mode != "backlog" {
		return fmt.Errorf("usage: bench [throughput|backlog]")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "notifier-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(stdout, "bench: data and logs kept in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	ps := &procs{}
	defer ps.stopAll()

	env, err := startStack(ctx, ps, dir, o, mode)
	if err != nil {
		return err
	}
	defer env.close()
	if mode == "backlog" {
		return runBacklog(ctx, env, o, stdout)
	}
	return runThroughput(ctx, env, o, stdout)
}

// root is the module's root, where bin/ is: the working directory under make.
func root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run bench from the module (make bench)")
		}
		dir = parent
	}
}
