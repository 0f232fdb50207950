//go:build faults

package main

// The fault suite (`make faults`): load on the notifier, run as real
// processes against a Temporal dev server whose database is a file, while
// something breaks. Each scenario counts what the receivers got against
// what was published and what the API reports.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/internal/testenv"
)

// faultWebhooks is how many webhooks a scenario's events go to, each with
// a receiver of its own.
const faultWebhooks = 4

// faultEvents is how many events a scenario publishes: 100, or
// NOTIFIER_FAULTS_EVENTS.
func faultEvents(t *testing.T) int {
	v := os.Getenv("NOTIFIER_FAULTS_EVENTS")
	if v == "" {
		return 100
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "NOTIFIER_FAULTS_EVENTS")
	return n
}

// faultEnv is the notifier's environment in every scenario: a short retry
// schedule (1 s, 3 s, 9 s) and attempt deadline, so that a scenario ends in
// a minute or two, on its own dev server, data directory and task queue.
func faultEnv(t *testing.T, srv *testenv.DiskDevServer) map[string]string {
	return map[string]string{
		"TEMPORAL_ADDRESS":                srv.FrontendHostPort(),
		"NOTIFIER_DATA_DIR":               t.TempDir(),
		"NOTIFIER_TASK_QUEUE":             "faults",
		"NOTIFIER_RETRY_INITIAL_INTERVAL": "1s",
		"NOTIFIER_ATTEMPT_TIMEOUT":        "3s",
	}
}

func TestFaults(t *testing.T) {
	var table []string
	scenario := func(name string, f func(t *testing.T) faultReport) {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			r := f(t)
			r.name, r.wall = name, time.Since(start)
			line := r.String()
			t.Log(line)
			fmt.Println("faults: " + line)
			table = append(table, line)
			r.check(t)
		})
	}
	scenario("KillServeProcess", faultKillServe)
	scenario("RestartTemporal", faultRestartTemporal)
	scenario("FlakyReceivers", faultFlakyReceivers)
	scenario("KillOneOfTwoWorkers", faultKillOneWorker)

	fmt.Println()
	fmt.Println(faultHeader)
	for _, line := range table {
		fmt.Println(line)
	}
}

// 1. The all-in-one process dies by kill -9 with attempts in flight and
// deliveries waiting for their retry, and starts again on the same data.
func faultKillServe(t *testing.T) faultReport {
	_, s, l := serveLoad(t, slowFailingFirst)
	l.strike("killed the serve process", func() {
		s.kill()
		s.start()
	})
	return l.finish(true)
}

// 2. The Temporal dev server stops mid-load and starts again on the same
// database file and ports; the notifier keeps running.
func faultRestartTemporal(t *testing.T) faultReport {
	srv, _, l := serveLoad(t, slowFailingFirst)
	l.strike("stopped Temporal for 5s", func() {
		srv.Stop(t)
		// The outage itself: publishing and delivering go on against a
		// server that is not there.
		time.Sleep(5 * time.Second)
		srv.Start(t)
	})
	return l.finish(true)
}

// 3. Every receiver fails half of the attempts, at random. No process dies,
// so nothing may arrive twice.
func faultFlakyReceivers(t *testing.T) faultReport {
	_, _, l := serveLoad(t, func(int) *faultReceiver {
		return &faultReceiver{maxDelay: 100 * time.Millisecond, failRate: 0.5}
	})
	return l.finish(false)
}

// 4. An API process and two workers on one task queue and one store; one
// worker dies by kill -9 and the other carries on alone.
func faultKillOneWorker(t *testing.T) faultReport {
	srv := testenv.StartDiskDevServer(t)
	env := faultEnv(t, srv)
	if os.Getenv("NOTIFIER_TEST_POSTGRES_URL") != "" {
		env["NOTIFIER_DATABASE_URL"] = testenv.PostgresURL(t)
	}
	api := startProcess(t, "api", env)
	w1 := startProcess(t, "worker", env)
	startProcess(t, "worker", env)
	l := newFaultLoad(t, api, slowFailingFirst)
	l.publishInBackground()
	l.strike("killed one of two workers", w1.kill)
	return l.finish(true)
}

// serveLoad starts a dev server, `notifier serve` on it and a load of
// events to receivers made by receiver.
func serveLoad(t *testing.T, receiver func(i int) *faultReceiver) (*testenv.DiskDevServer,
	*stack, *faultLoad) {
	srv := testenv.StartDiskDevServer(t)
	s := startProcess(t, "serve", faultEnv(t, srv))
	l := newFaultLoad(t, s, receiver)
	l.publishInBackground()
	return srv, s, l
}

// slowFailingFirst makes receivers that answer within 300 ms, every other
// one failing each delivery's first attempt: at any moment some attempts
// are in flight and some deliveries wait for a retry.
func slowFailingFirst(i int) *faultReceiver {
	return &faultReceiver{maxDelay: 300 * time.Millisecond, failFirst: i%2 == 1}
}

// faultReceiver is a webhook receiver that may answer late or fail, and
// keeps every copy of every delivery it was sent.
type faultReceiver struct {
	// maxDelay: each answer waits a random time up to this.
	maxDelay time.Duration
	// failFirst: every delivery's first attempt is answered 503.
	failFirst bool
	// failRate: this share of attempts is answered 500, at random.
	failRate float64
	// status returns the delivery's status in the API, "" if the API does
	// not answer.
	status func(deliveryID string) string

	server  *httptest.Server
	pending atomic.Int64 // requests being answered
	mu      sync.Mutex
	copies  map[string][]received // by delivery id
}

// received is one request for a delivery.
type received struct {
	at      time.Time
	attempt string
	// code is the status answered; 0 when the notifier hung up first.
	code int
	// apiStatus is, for a copy of a delivery already accepted, the
	// delivery's status in the API when the copy arrived.
	apiStatus string
}

func (r *faultReceiver) start(t *testing.T) {
	r.copies = map[string][]received{}
	r.server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.server.Close)
}

func (r *faultReceiver) url() string { return r.server.URL + "/hook" }

func (r *faultReceiver) serve(w http.ResponseWriter, req *http.Request) {
	r.pending.Add(1)
	defer r.pending.Add(-1)
	id := req.Header.Get("X-Barfinex-Delivery")
	_, err := io.Copy(io.Discard, req.Body)
	if id == "" { // the webhook's test ping
		w.WriteHeader(http.StatusOK)
		return
	}
	got := received{attempt: req.Header.Get("X-Barfinex-Attempt")}
	if r.maxDelay > 0 && err == nil {
		select {
		case <-time.After(rand.N(r.maxDelay)):
		case <-req.Context().Done():
		}
	}
	if err != nil || req.Context().Err() != nil {
		got.at = time.Now()
		r.add(id, got)
		return
	}
	got.code = http.StatusOK
	switch {
	case r.failFirst && got.attempt == "1":
		got.code = http.StatusServiceUnavailable
	case r.failRate > 0 && rand.Float64() < r.failRate:
		got.code = http.StatusInternalServerError
	}
	if got.code == http.StatusOK && r.accepted(id) > 0 {
		got.apiStatus = r.status(id)
		if req.Context().Err() != nil { // the look-up outlasted the attempt
			got.code = 0
		}
	}
	got.at = time.Now()
	r.add(id, got)
	if got.code != 0 {
		w.WriteHeader(got.code)
	}
}

func (r *faultReceiver) add(id string, got received) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.copies[id] = append(r.copies[id], got)
}

// accepted counts the copies of a delivery answered 2xx.
func (r *faultReceiver) accepted(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.copies[id] {
		if c.code == http.StatusOK {
			n++
		}
	}
	return n
}

func (r *faultReceiver) received(id string) []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.copies[id]...)
}

// faultLoad is a scenario's webhooks, receivers and published events.
type faultLoad struct {
	t         *testing.T
	api       *stack
	receivers []*faultReceiver
	webhooks  []string
	events    int
	// faultsOver is when the fault ended: a duplicate whose first copy
	// arrived before then is one that at-least-once delivery explains.
	faultsOver time.Time

	published atomic.Int64 // events the API acknowledged
	refused   atomic.Int64 // publishes that failed and were made again
	done      chan []string
	quit      chan struct{} // closed when the test ends
}

func newFaultLoad(t *testing.T, api *stack, receiver func(i int) *faultReceiver) *faultLoad {
	l := &faultLoad{t: t, api: api, events: faultEvents(t), done: make(chan []string, 1),
		quit: make(chan struct{})}
	t.Cleanup(func() { close(l.quit) })
	for i := range faultWebhooks {
		r := receiver(i)
		r.status = l.deliveryStatus
		r.start(t)
		l.receivers = append(l.receivers, r)
		l.webhooks = append(l.webhooks,
			api.createWebhook(r.url(), "faults-secret", true, notifier.EventOrderFilled))
	}
	return l
}

// publishRate is how many events a second the publishers offer, so that
// publishing goes on for a while and a fault strikes in the middle of it.
const publishRate = 10

// publishInBackground publishes the scenario's events, publishRate a
// second, from four publishers at once. A publisher whose publish fails
// publishes the same event (same id) again, as the API asks, until it is
// acknowledged.
func (l *faultLoad) publishInBackground() {
	ids := make([]string, l.events)
	for i := range ids {
		ids[i] = fmt.Sprintf("fault-%s-%04d", strings.ToLower(l.t.Name()[len("TestFaults/"):]), i)
	}
	next := make(chan int)
	go func() {
		tick := time.NewTicker(time.Second / publishRate)
		defer tick.Stop()
		defer close(next)
		for i := range ids {
			<-tick.C
			select {
			case next <- i:
			case <-l.quit:
				return
			}
		}
	}()
	go func() {
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					l.publishUntilAcknowledged(ids[i], i)
				}
			}()
		}
		wg.Wait()
		l.done <- ids
	}()
}

func (l *faultLoad) publishUntilAcknowledged(id string, i int) {
	body := map[string]any{"id": id, "type": "order.filled",
		"data": map[string]any{"symbol": "BTCUSDT", "qty": i}}
	deadline := time.After(3 * time.Minute)
	for {
		code, err := l.api.try("POST", "/v1/events", body, nil)
		if err == nil && code == http.StatusAccepted {
			l.published.Add(1)
			return
		}
		l.refused.Add(1)
		select { // the publisher's own backoff
		case <-time.After(250 * time.Millisecond):
		case <-deadline:
			return
		case <-l.quit:
			return
		}
	}
}

// waitForTrouble waits until a third of the events are published, some
// attempts are in flight and some deliveries wait for a retry: the moment
// to break something.
func (l *faultLoad) waitForTrouble() {
	l.t.Helper()
	require.Eventually(l.t, func() bool {
		return l.published.Load() >= int64(l.events/3) && l.inFlight() >= 2 && l.retrying() >= 2
	}, 2*time.Minute, 20*time.Millisecond, "no attempts in flight and retries pending together")
}

// strike waits for the moment, breaks something, and notes when the fault
// was over.
func (l *faultLoad) strike(what string, fault func()) {
	l.t.Helper()
	l.waitForTrouble()
	inFlight, retrying := l.inFlight(), l.retrying()
	fault()
	l.faultsOver = time.Now()
	l.t.Logf("%s with %d attempts in flight and %d deliveries retrying", what, inFlight, retrying)
}

func (l *faultLoad) inFlight() int {
	n := 0
	for _, r := range l.receivers {
		n += int(r.pending.Load())
	}
	return n
}

// retrying counts the deliveries that wait for a retry (up to a page).
func (l *faultLoad) retrying() int {
	n := 0
	for _, id := range l.webhooks {
		var page struct {
			Items []deliveryOut `json:"items"`
		}
		code, err := l.api.try("GET", "/v1/webhooks/"+id+"/deliveries?status=retrying&limit=100",
			nil, &page)
		if err == nil && code == http.StatusOK {
			n += len(page.Items)
		}
	}
	return n
}

// deliveryStatus returns a delivery's status in the API, "" if the API
// does not answer.
func (l *faultLoad) deliveryStatus(id string) string {
	var d deliveryOut
	code, err := l.api.tryWith(lookupClient, "GET", "/v1/deliveries/"+id, nil, &d)
	if err != nil || code != http.StatusOK {
		return ""
	}
	return d.Status
}

type listedDelivery struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
}

// deliveries returns every delivery of the scenario's webhooks by id.
func (l *faultLoad) deliveries() (map[string]listedDelivery, error) {
	all := map[string]listedDelivery{}
	for _, id := range l.webhooks {
		cursor := ""
		for {
			var page struct {
				Items      []listedDelivery `json:"items"`
				NextCursor string           `json:"next_cursor"`
			}
			path := "/v1/webhooks/" + id + "/deliveries?limit=100&cursor=" + cursor
			code, err := l.api.try("GET", path, nil, &page)
			if err != nil || code != http.StatusOK {
				return nil, fmt.Errorf("list deliveries: %d %v", code, err)
			}
			for _, d := range page.Items {
				all[d.ID] = d
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
	}
	return all, nil
}

// finish waits for every event to be published and every delivery to end,
// then counts, logs and checks what happened. processFaults says whether a
// process died or lost its server, which explains duplicates.
func (l *faultLoad) finish(processFaults bool) faultReport {
	t := l.t
	t.Helper()
	var ids []string
	select {
	case ids = <-l.done:
	case <-time.After(4 * time.Minute):
		t.Fatal("publishing did not end within 4 minutes")
	}
	rep := faultReport{events: int(l.published.Load()), deliveries: len(ids) * len(l.webhooks)}
	require.Equal(t, len(ids), rep.events, "every event was acknowledged in the end")

	// Every delivery ends: succeeded, or failed after its four attempts.
	var got map[string]listedDelivery
	ended := func() bool {
		var err error
		if got, err = l.deliveries(); err != nil {
			return false
		}
		for _, d := range got {
			if d.Status != "succeeded" && d.Status != "failed" {
				return false
			}
		}
		return len(got) >= rep.deliveries
	}
	deadline := time.Now().Add(3 * time.Minute)
	for !ended() && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}

	var problems []string
	for _, ev := range ids {
		for i, wh := range l.webhooks {
			id := notifier.DeliveryID(ev, wh)
			r := l.receivers[i]
			copies := r.received(id)
			accepted := r.accepted(id)
			for _, c := range copies {
				if c.code == 0 {
					rep.cut++
				}
			}
			d, ok := got[id]
			switch {
			case ok && d.Status == "succeeded" && accepted > 0:
				rep.delivered++
			case ok && d.Status == "failed" && d.Attempts == 4 && accepted == 0:
				rep.failed++
			default:
				rep.lost++
				problems = append(problems, fmt.Sprintf("%s: api %+v (listed %v), receiver got %d, accepted %d",
					id, d, ok, len(copies), accepted))
				continue
			}
			if accepted < 2 {
				continue
			}
			rep.duplicated += accepted - 1
			first := firstAccepted(copies)
			for _, c := range copies {
				if c.apiStatus == "succeeded" {
					rep.afterSuccess++
					problems = append(problems, fmt.Sprintf(
						"%s: sent again (attempt %s) after the API recorded it succeeded", id, c.attempt))
				}
			}
			if !processFaults || !first.at.Before(l.faultsOver) {
				rep.unexplained += accepted - 1
				problems = append(problems, fmt.Sprintf(
					"%s: accepted %d times, the first at %s, after the fault ended at %s", id, accepted,
					first.at.Format(time.StampMilli), l.faultsOver.Format(time.StampMilli)))
			}
		}
	}
	for _, p := range problems {
		t.Log(p)
	}
	t.Logf("publishes made again after a failure: %d", l.refused.Load())
	return rep
}

// check fails the test if anything was lost, or sent twice where
// at-least-once delivery does not explain it.
func (r faultReport) check(t *testing.T) {
	require.Zero(t, r.lost, "deliveries lost")
	require.Zero(t, r.afterSuccess, "deliveries sent again after their success was recorded")
	require.Zero(t, r.unexplained, "duplicates that at-least-once delivery does not explain")
}

func firstAccepted(copies []received) received {
	for _, c := range copies {
		if c.code == http.StatusOK {
			return c
		}
	}
	return received{}
}

// faultReport is what a scenario counted.
type faultReport struct {
	name       string
	wall       time.Duration
	events     int // events published and acknowledged
	deliveries int // events × webhooks: the deliveries owed
	delivered  int // accepted by the receiver and succeeded in the API
	failed     int // never accepted, failed in the API after 4 attempts
	cut        int // attempts the notifier hung up on before the answer
	duplicated int // copies accepted beyond the first
	lost       int // neither delivered nor failed as above
	// afterSuccess counts copies sent after the API showed the delivery
	// succeeded; unexplained, duplicates no fault accounts for.
	afterSuccess, unexplained int
}

const faultHeader = "scenario              published  deliveries  delivered  failed  cut  duplicated  lost  wall"

func (r faultReport) String() string {
	return fmt.Sprintf("%-20s  %9d  %10d  %9d  %6d  %3d  %10d  %4d  %4.0fs", r.name, r.events,
		r.deliveries, r.delivered, r.failed, r.cut, r.duplicated, r.lost, r.wall.Seconds())
}

// try sends a request to the API like call, but returns a failure to reach
// it instead of failing the test: in these scenarios the API may be down.
func (s *stack) try(method, path string, body any, out any) (int, error) {
	return s.tryWith(faultClient, method, path, body, out)
}

func (s *stack) tryWith(c *http.Client, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

var (
	faultClient = &http.Client{Timeout: 15 * time.Second}
	// lookupClient is the receivers': they look up while an attempt waits.
	lookupClient = &http.Client{Timeout: time.Second}
)
