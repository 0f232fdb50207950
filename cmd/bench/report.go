package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// report is what a throughput run found.
type report struct {
	o              *options
	rows           []*result
	naive, direct  *result
	deliveryEvents int
	fanOutEvents   int
	fanOutWidth    int
}

func (r *report) all() []*result {
	return append(append([]*result{}, r.rows...), r.naive, r.direct)
}

// table is the report as aligned text.
func (r *report) table() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tdeliveries\tdeliveries/s\t÷ naive\t÷ direct\toffered/s\tp50 ms\tp95 ms\t"+
		"p99 ms\tserver CPU s\tworker CPU s\tserver CPU ms/delivery\tworker peak RSS MiB\tduplicates\t")
	for _, x := range r.all() {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%d\t\n",
			x.name, x.deliveries, x.rate, ratio(x.rate, r.naive.rate), ratio(x.rate, r.direct.rate),
			num(x.offered, 0), ms(x.p50), ms(x.p95), ms(x.p99), num(x.serverCPU, 1), x.workerCPU,
			num(1000*x.serverCPU/float64(x.deliveries), 1), num(x.workerHWM, 0), x.duplicates)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nhistory events: %d for a delivery that succeeded on its first attempt; "+
		"%d for the EventWorkflow fanning one event out to %d webhooks (the API fans out small "+
		"events itself, with no workflow of its own)\n", r.deliveryEvents, r.fanOutEvents, r.fanOutWidth)
	for _, x := range r.rows {
		fmt.Fprintf(&b, "%s: /metrics counted %.0f deliveries succeeded in the saturation run; "+
			"publish→first attempt p50 %s ms, p99 %s ms at the offered rate\n",
			x.name, x.metricsDelivered, num(1000*x.firstAttemptP50, 1), num(1000*x.firstAttemptP99, 1))
	}
	return b.String()
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.3g×", a/b)
}

func num(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

// markdown is the report as a table in Markdown.
func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString("| | deliveries | deliveries/s | ÷ naive | ÷ direct | offered/s | " +
		"p50 ms | p95 ms | p99 ms | server CPU s | worker CPU s | " +
		"server CPU ms/delivery | worker peak RSS MiB | duplicates |\n")
	b.WriteString("| --- |" + strings.Repeat(" ---: |", 13) + "\n")
	for _, x := range r.all() {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %.2f | %s | %s | %d |\n",
			x.name, x.deliveries, x.rate, ratio(x.rate, r.naive.rate), ratio(x.rate, r.direct.rate),
			num(x.offered, 0), ms(x.p50), ms(x.p95), ms(x.p99), num(x.serverCPU, 1), x.workerCPU,
			num(1000*x.serverCPU/float64(x.deliveries), 1), num(x.workerHWM, 0), x.duplicates)
	}
	fmt.Fprintf(&b, "\nHistory events: **%d** for a delivery that succeeded on its first attempt; "+
		"**%d** for the `EventWorkflow` fanning one stored event out to %d webhooks (the path of "+
		"events the notifier stores itself; a published event with few webhooks is fanned out by "+
		"the API, with no workflow of its own).\n\n", r.deliveryEvents, r.fanOutEvents, r.fanOutWidth)
	for _, x := range r.rows {
		fmt.Fprintf(&b, "- %s: `/metrics` counted %.0f deliveries succeeded in the saturation run; "+
			"publish→first attempt p50 %s ms, p99 %s ms at the offered rate.\n",
			x.name, x.metricsDelivered, num(1000*x.firstAttemptP50, 1), num(1000*x.firstAttemptP99, 1))
	}
	return b.String()
}

// write puts the report into the benchmarks page, between its markers, with
// the machine it ran on and the command.
func (r *report) write(path string) error {
	var b strings.Builder
	b.WriteString(machine())
	fmt.Fprintf(&b, "Command: `%s`\n\n", command(r.o))
	b.WriteString(r.markdown())
	return replaceSection(path, "throughput", b.String())
}

func command(o *options) string {
	c := "make bench"
	if o.events != 2000 {
		c = fmt.Sprintf("BENCH_EVENTS=%d %s", o.events, c)
	}
	return c
}

// machine describes the machine: cores, CPU model, memory, Go.
func machine() string {
	model, mem := "", ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() && model == "" {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() && mem == "" {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == "MemTotal" {
				var kb float64
				fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
				mem = fmt.Sprintf("%.0f GiB", kb/(1<<20))
			}
		}
		f.Close()
	}
	gover := runtime.Version()
	if out, err := exec.Command("go", "version").Output(); err == nil {
		gover = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("Machine: %d cores (nproc), %s, %s RAM; %s; measured %s.\n\n",
		runtime.NumCPU(), model, mem, gover, time.Now().UTC().Format("2006-01-02 15:04 MST"))
}

// replaceSection writes body between the page's `<!-- bench:name -->` and
// `<!-- /bench:name -->` markers, adding them at the end when missing.
func replaceSection(path, name, body string) error {
	open, end := "<!-- bench:"+name+" -->", "<!-- /bench:"+name+" -->"
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	page := string(old)
	section := open + "\n" + body + end
	i, j := strings.Index(page, open), strings.Index(page, end)
	if i >= 0 && j > i {
		page = page[:i] + section + page[j+len(end):]
	} else {
		page = strings.TrimRight(page, "\n") + "\n\n" + section + "\n"
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(page), 0o644)
}
