package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/internal/testenv"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

// devServer is the Temporal dev server every test in this package uses.
var devServer interface {
	FrontendHostPort() string
	Client() client.Client
}

// TestMain starts a Temporal dev server, or, when
// NOTIFIER_TEST_TEMPORAL_ADDRESS is set, uses the Temporal server there
// (`make e2e-temporal-postgres` runs these tests on Temporal's own server on
// PostgreSQL that way).
func TestMain(m *testing.M) {
	if role := os.Getenv(childRoleEnv); role != "" {
		os.Exit(runChild(role))
	}
	if addr := os.Getenv("NOTIFIER_TEST_TEMPORAL_ADDRESS"); addr != "" {
		c, err := client.Dial(client.Options{HostPort: addr})
		if err != nil {
			fmt.Fprintln(os.Stderr, "connect to temporal:", err)
			os.Exit(1)
		}
		devServer = externalServer{addr: addr, c: c}
		code := m.Run()
		c.Close()
		os.Exit(code)
	}
	os.Exit(testenv.MainWithDevServer(m, func(srv *testsuite.DevServer) { devServer = srv }))
}

type externalServer struct {
	addr string
	c    client.Client
}

func (s externalServer) FrontendHostPort() string { return s.addr }
func (s externalServer) Client() client.Client    { return s.c }

// stack is one notifier process (API and worker) as `notifier serve` runs it,
// on its own data directory and task queue.
type stack struct {
	t       *testing.T
	role    string // serve, api or worker
	base    string
	token   string
	env     map[string]string
	cancel  context.CancelFunc
	done    chan error
	stopped bool
	// proc says the stack runs in a process of its own (startProcess), cmd;
	// otherwise it runs in the test's process.
	proc bool
	cmd  *exec.Cmd
	// logs holds what the process logged; answers every API answer's body.
	logs    testenv.SyncBuffer
	answers testenv.SyncBuffer
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startStack runs `notifier serve` with the given environment on top of
// test defaults, and waits until it answers.
func startStack(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	return startRole(t, "serve", extra)
}

// startRole runs the notifier in one role (serve, api or worker).
func startRole(t *testing.T, role string, extra map[string]string) *stack {
	t.Helper()
	s := newStack(t, role, extra)
	s.start()
	t.Cleanup(s.stop)
	return s
}

// startProcess runs the notifier in one role in a process of its own, which
// kill can end as kill -9 does.
func startProcess(t *testing.T, role string, extra map[string]string) *stack {
	t.Helper()
	s := newStack(t, role, extra)
	s.proc = true
	s.start()
	t.Cleanup(s.stop)
	return s
}

func newStack(t *testing.T, role string, extra map[string]string) *stack {
	t.Helper()
	addr := freeAddr(t)
	env := map[string]string{
		"NOTIFIER_HTTP_ADDR":          addr,
		"NOTIFIER_DATA_DIR":           t.TempDir(),
		"NOTIFIER_API_TOKEN":          "test-token",
		"NOTIFIER_ALLOW_PRIVATE_URLS": "true",
		"NOTIFIER_TASK_QUEUE":         "notifier-" + strings.ReplaceAll(t.Name(), "/", "-"),
		"NOTIFIER_LOG_LEVEL":          "warn",
		"TEMPORAL_ADDRESS":            devServer.FrontendHostPort(),
	}
	for k, v := range extra {
		env[k] = v
	}
	return &stack{t: t, role: role, base: "http://" + addr, token: env["NOTIFIER_API_TOKEN"], env: env}
}

func (s *stack) start() {
	t := s.t
	s.done, s.stopped = make(chan error, 1), false
	if s.proc {
		s.startProcess()
	} else {
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		go func() {
			s.done <- run(ctx, []string{s.role}, func(k string) string { return s.env[k] }, &s.logs)
		}()
	}
	if s.role == "worker" {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-s.done:
			t.Fatalf("notifier exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "notifier did not answer /healthz")
	}
}

// stop ends the process as a shutdown signal would.
func (s *stack) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	if s.proc {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	} else {
		s.cancel()
	}
	select {
	case err := <-s.done:
		require.NoError(s.t, err)
	case <-time.After(30 * time.Second):
		s.t.Fatal("notifier did not stop")
	}
}

// call sends a request to the API and decodes the JSON answer into out.
func (s *stack) call(method, path string, body any, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(s.t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	require.NoError(s.t, err)
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	s.answers.Write(append(raw, '\n'))
	if out != nil && len(raw) > 0 {
		require.NoError(s.t, json.Unmarshal(raw, out), string(raw))
	}
	return resp.StatusCode
}

type webhookOut struct {
	ID        string `json:"id"`
	HasSecret bool   `json:"has_secret"`
	Ping      struct {
		OK bool `json:"ok"`
	} `json:"ping"`
}

func (s *stack) createWebhook(url, secret string, active bool, events ...notifier.EventType) string {
	s.t.Helper()
	var out webhookOut
	status := s.call("POST", "/v1/webhooks", map[string]any{
		"name": "e2e", "url": url, "events": events, "secret": secret, "active": active,
	}, &out)
	require.Equal(s.t, http.StatusCreated, status)
	return out.ID
}

type publishOut struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

func (s *stack) publish(body map[string]any) publishOut {
	s.t.Helper()
	var out publishOut
	require.Equal(s.t, http.StatusAccepted, s.call("POST", "/v1/events", body, &out))
	return out
}

type deliveryOut struct {
	Status     string `json:"status"`
	Attempts   int    `json:"attempts"`
	Runs       int    `json:"runs"`
	LastError  string `json:"last_error"`
	AttemptLog []struct {
		Run        int  `json:"run"`
		Manual     bool `json:"manual"`
		Number     int  `json:"number"`
		StatusCode int  `json:"status_code"`
	} `json:"attempt_log"`
	Live *struct {
		Status        string  `json:"status"`
		Attempt       int     `json:"attempt"`
		NextAttemptAt *string `json:"next_attempt_at"`
	} `json:"live"`
}

// waitWorkflow waits for a workflow to close and returns its error.
func waitWorkflow(t *testing.T, id string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return devServer.Client().GetWorkflow(ctx, id, "").Get(ctx, nil)
}

// captureHistory writes the history of a closed workflow to
// $NOTIFIER_CAPTURE_HISTORIES/name.json when that variable is set (see
// `make histories`); the workflows package replays these files.
func captureHistory(t *testing.T, name, workflowID string) {
	t.Helper()
	dir := os.Getenv("NOTIFIER_CAPTURE_HISTORIES")
	if dir == "" {
		return
	}
	ctx := context.Background()
	iter := devServer.Client().GetWorkflowHistory(ctx, workflowID, "", false,
		enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var history historypb.History
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		history.Events = append(history.Events, ev)
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&history)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644))
}

// requireNotInHistory fails the test if s appears in any event of the
// workflow's history, payloads included.
func requireNotInHistory(t *testing.T, workflowID, s string) {
	t.Helper()
	iter := devServer.Client().GetWorkflowHistory(context.Background(), workflowID, "", false,
		enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		raw, err := proto.Marshal(ev)
		require.NoError(t, err)
		require.False(t, bytes.Contains(raw, []byte(s)), "history of %s holds %q", workflowID, s)
		n++
	}
	require.NotZero(t, n)
}

// waitDelivery waits for the delivery of an event to a webhook to end and
// returns its workflow's error. The delivery's workflow exists once the
// API has accepted its event.
func waitDelivery(t *testing.T, eventID, webhookID string) error {
	t.Helper()
	return waitWorkflow(t, notifier.DeliveryID(eventID, webhookID))
}

// waitStatus waits until the API shows the delivery in the given status.
func (s *stack) waitStatus(deliveryID, status string) deliveryOut {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var d deliveryOut
		code := s.call("GET", "/v1/deliveries/"+deliveryID, nil, &d)
		if code == http.StatusOK && d.Status == status {
			return d
		}
		require.True(s.t, time.Now().Before(deadline), "delivery %s is %q, want %q", deliveryID, d.Status, status)
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEndToEnd_DeliversSignedEnvelope(t *testing.T) {
	s := startStack(t, nil)
	r := testenv.NewReceiver(t)
	secret := "whsec-e2e-Ü-🔑"
	webhookID := s.createWebhook(r.URL(), secret, true, notifier.EventSignalEmitted)
	ping := r.WaitFor(t, "", 1, 10*time.Second)[0]
	require.Equal(t, "ping", ping.Header.Get("X-Barfinex-Event"))
	require.True(t, notifier.VerifySignature(secret, ping.Body, ping.Header.Get("X-Barfinex-Signature")))

	data := map[string]any{"strategy": "momentum-btc", "symbol": "BTCUSDT", "direction": "LONG",
		"score": 0.82, "note": "ünïcødé 🚀 <&> / \u2028 end"}
	ev := s.publish(map[string]any{"type": "signal.emitted", "data": data})
	require.Regexp(t, `^evt_`, ev.ID)

	req := r.WaitFor(t, ev.ID, 1, 15*time.Second)[0]
	var env map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(req.Body, &env))
	require.Len(t, env, 4)
	var got struct {
		ID, Type, Timestamp string
		Data                map[string]any
	}
	require.NoError(t, json.Unmarshal(req.Body, &got))
	require.Equal(t, ev.ID, got.ID)
	require.Equal(t, "signal.emitted", got.Type)
	require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`, got.Timestamp)
	require.Equal(t, data, got.Data)
	require.Equal(t, "application/json", req.Header.Get("Content-Type"))
	require.Regexp(t, `^Barfinex-Notifier/`, req.Header.Get("User-Agent"))
	deliveryID := notifier.DeliveryID(ev.ID, webhookID)
	require.Equal(t, deliveryID, req.Header.Get("X-Barfinex-Delivery"))

	// The receiver's own check, with the verification function as given to
	// receivers, over the raw bytes received.
	sig := req.Header.Get("X-Barfinex-Signature")
	bodyFile := filepath.Join(t.TempDir(), "body.json")
	require.NoError(t, os.WriteFile(bodyFile, req.Body, 0o600))
	out, err := exec.Command("node", "testdata/verify.js", secret, bodyFile, sig).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "valid", strings.TrimSpace(string(out)))
	out, err = exec.Command("node", "testdata/verify.js", "wrong", bodyFile, sig).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, "invalid", strings.TrimSpace(string(out)))

	require.NoError(t, waitDelivery(t, ev.ID, webhookID))
	var d deliveryOut
	require.Equal(t, http.StatusOK, s.call("GET", "/v1/deliveries/"+deliveryID, nil, &d))
	require.Equal(t, "succeeded", d.Status)
	require.Equal(t, 1, d.Attempts)
	pingID := workflows.PingWorkflowID(webhookID, ping.Header.Get("X-Barfinex-Event-Id"))
	for _, id := range []string{deliveryID, pingID} {
		requireNotInHistory(t, id, secret)
	}
	captureHistory(t, "delivery-first-attempt", deliveryID)
	captureHistory(t, "ping", pingID)
}

func TestEndToEnd_RetriesUntilAccepted(t *testing.T) {
	s := startStack(t, map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "300ms"})
	r := testenv.NewReceiver(t, 200, 500, 500, 200) // the first answers the ping
	webhookID := s.createWebhook(r.URL(), "k2", true, notifier.EventOrderFilled)
	ev := s.publish(map[string]any{"type": "order.filled",
		"data": map[string]any{"symbol": "ETHUSDT", "qty": "1.5", "price": "3120.10"}})

	deliveryID := notifier.DeliveryID(ev.ID, webhookID)
	require.NoError(t, waitDelivery(t, ev.ID, webhookID))
	got := r.WaitFor(t, ev.ID, 3, time.Second)
	require.Len(t, got, 3, "no attempt after the 2xx")
	require.GreaterOrEqual(t, got[1].At.Sub(got[0].At), 300*time.Millisecond)
	require.GreaterOrEqual(t, got[2].At.Sub(got[1].At), 900*time.Millisecond)
	for _, req := range got[1:] {
		require.Equal(t, got[0].Body, req.Body, "every attempt sends the same bytes")
		require.Equal(t, got[0].Header.Get("X-Barfinex-Signature"), req.Header.Get("X-Barfinex-Signature"))
	}

	var d deliveryOut
	require.Equal(t, http.StatusOK, s.call("GET", "/v1/deliveries/"+deliveryID, nil, &d))
	require.Equal(t, "succeeded", d.Status)
	require.Equal(t, 3, d.Attempts)
	require.Len(t, d.AttemptLog, 3)
	for i, want := range []int{500, 500, 200} {
		require.Equal(t, i+1, d.AttemptLog[i].Number)
		require.Equal(t, want, d.AttemptLog[i].StatusCode)
	}
	captureHistory(t, "delivery-third-attempt", deliveryID)
}

func TestEndToEnd_FailsAfterFourAttemptsThenRetriedByHand(t *testing.T) {
	s := startStack(t, map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "100ms"})
	r := testenv.NewReceiver(t, 200, 502)
	webhookID := s.createWebhook(r.URL(), "", true, notifier.EventOrderPlaced)
	ev := s.publish(map[string]any{"type": "order.placed", "data": map[string]any{"symbol": "BTCUSDT"}})

	deliveryID := notifier.DeliveryID(ev.ID, webhookID)
	require.Error(t, waitDelivery(t, ev.ID, webhookID), "a failed delivery is a failed workflow")
	require.Len(t, r.WaitFor(t, ev.ID, 4, time.Second), 4)

	var d deliveryOut
	require.Equal(t, http.StatusOK, s.call("GET", "/v1/deliveries/"+deliveryID, nil, &d))
	require.Equal(t, "failed", d.Status)
	require.Equal(t, 4, d.Attempts)
	require.Equal(t, "deliver: receiver answered 502", d.LastError)
	require.Len(t, d.AttemptLog, 4)
	for i, a := range d.AttemptLog {
		require.Equal(t, i+1, a.Number)
		require.Equal(t, 502, a.StatusCode)
		require.Equal(t, 1, a.Run)
		require.False(t, a.Manual)
	}
	captureHistory(t, "delivery-failed", deliveryID)

	// The receiver recovers; a retry by hand is a new run of four fresh
	// attempts, and the history keeps the first run's.
	r.Answer(200)
	require.Equal(t, http.StatusAccepted, s.call("POST", "/v1/deliveries/"+deliveryID+"/retry", nil, &d))
	require.Equal(t, "pending", d.Status)
	d = s.waitStatus(deliveryID, "succeeded")
	require.NoError(t, waitWorkflow(t, deliveryID))
	require.Equal(t, 5, d.Attempts)
	require.Equal(t, 2, d.Runs)
	require.Len(t, d.AttemptLog, 5)
	last := d.AttemptLog[4]
	require.Equal(t, 2, last.Run)
	require.Equal(t, 1, last.Number)
	require.True(t, last.Manual)
	require.Equal(t, 200, last.StatusCode)
	got := r.WaitFor(t, ev.ID, 5, time.Second)
	require.Len(t, got, 5)
	require.Equal(t, got[0].Body, got[4].Body, "the retry sends the same envelope")

	// A delivery that succeeded is not retried.
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	require.Equal(t, http.StatusConflict, s.call("POST", "/v1/deliveries/"+deliveryID+"/retry", nil, &e))
	require.Equal(t, "conflict", e.Error.Code)
	require.Len(t, r.Requests(), 6, "the refused retry sent nothing") // ping + 5
}

func TestEndToEnd_ResetFromTemporalRedelivers(t *testing.T) {
	s := startStack(t, map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "100ms"})
	r := testenv.NewReceiver(t, 200, 500)
	webhookID := s.createWebhook(r.URL(), "k", true, notifier.EventOrderFilled)
	ev := s.publish(map[string]any{"type": "order.filled", "data": map[string]any{"symbol": "BTCUSDT"}})
	deliveryID := notifier.DeliveryID(ev.ID, webhookID)
	require.Error(t, waitDelivery(t, ev.ID, webhookID))

	// What the Web UI's Reset does: a new run from the first workflow task.
	r.Answer(200)
	ctx := context.Background()
	desc, err := devServer.Client().DescribeWorkflow(ctx, deliveryID, "")
	require.NoError(t, err)
	resp, err := devServer.Client().ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace:                 "default",
		WorkflowExecution:         desc.RawResponse.WorkflowExecutionInfo.Execution,
		Reason:                    "receiver fixed",
		WorkflowTaskFinishEventId: 4, // the first workflow task completed
		RequestId:                 "reset-" + deliveryID,
	})
	require.NoError(t, err)
	require.NoError(t, devServer.Client().GetWorkflow(ctx, deliveryID, resp.RunId).Get(ctx, nil))

	d := s.waitStatus(deliveryID, "succeeded")
	require.Equal(t, 5, d.Attempts)
	require.Equal(t, 2, d.Runs)
	require.True(t, d.AttemptLog[4].Manual)
	require.Equal(t, 200, d.AttemptLog[4].StatusCode)
}

func TestEndToEnd_FanOutToSubscribedActiveWebhooks(t *testing.T) {
	s := startStack(t, nil)
	subscribed := testenv.NewReceiver(t)
	alsoSubscribed := testenv.NewReceiver(t)
	inactive := testenv.NewReceiver(t)
	otherType := testenv.NewReceiver(t)
	a := s.createWebhook(subscribed.URL(), "a", true, notifier.EventOrderFilled)
	b := s.createWebhook(alsoSubscribed.URL(), "", true, notifier.EventOrderFilled, notifier.EventOrderPlaced)
	c := s.createWebhook(inactive.URL(), "c", false, notifier.EventOrderFilled)
	d := s.createWebhook(otherType.URL(), "d", true, notifier.EventSignalEmitted)

	ev := s.publish(map[string]any{"type": "order.filled", "data": map[string]any{"symbol": "SOLUSDT"}})

	// An accepted event's deliveries are started already: durable in
	// Temporal before the API answered.
	ctx := context.Background()
	for _, id := range []string{a, b} {
		_, err := devServer.Client().DescribeWorkflow(ctx, notifier.DeliveryID(ev.ID, id), "")
		require.NoError(t, err)
	}
	for _, id := range []string{a, b} {
		require.NoError(t, waitWorkflow(t, notifier.DeliveryID(ev.ID, id)))
	}
	for _, id := range []string{c, d} {
		require.Equal(t, http.StatusNotFound, s.call("GET", "/v1/deliveries/"+notifier.DeliveryID(ev.ID, id), nil, nil))
	}
	require.Len(t, subscribed.WaitFor(t, ev.ID, 1, time.Second), 1)
	require.Len(t, alsoSubscribed.WaitFor(t, ev.ID, 1, time.Second), 1)
	for _, r := range []*testenv.Receiver{inactive, otherType} {
		for _, req := range r.Requests() {
			require.NotEqual(t, ev.ID, req.Header.Get("X-Barfinex-Event-Id"))
		}
	}
}

func TestEndToEnd_SameEventIDDeliveredOnce(t *testing.T) {
	s := startStack(t, nil)
	r := testenv.NewReceiver(t)
	webhookID := s.createWebhook(r.URL(), "k", true, notifier.EventOrderFilled)
	body := map[string]any{"id": "fill-7781", "type": "order.filled", "data": map[string]any{"symbol": "BTCUSDT"}}

	first := s.publish(body)
	second := s.publish(body)
	require.Equal(t, "fill-7781", first.ID)
	require.False(t, first.Duplicate)
	require.True(t, second.Duplicate)
	require.NoError(t, waitDelivery(t, "fill-7781", webhookID))
	third := s.publish(body)
	require.True(t, third.Duplicate)

	require.Len(t, r.WaitFor(t, "fill-7781", 1, time.Second), 1)

	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	body["data"] = map[string]any{"symbol": "ETHUSDT"}
	require.Equal(t, http.StatusConflict, s.call("POST", "/v1/events", body, &e))
	require.Equal(t, "conflict", e.Error.Code)
}

func TestEndToEnd_DeactivatedWebhookStopsRetries(t *testing.T) {
	// The next attempt would be a minute away: the delivery must stop well
	// before that, as soon as the webhook is deactivated.
	s := startStack(t, map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "1m"})
	r := testenv.NewReceiver(t, 200, 500)
	webhookID := s.createWebhook(r.URL(), "k", true, notifier.EventRiskBlocked)
	ev := s.publish(map[string]any{"type": "risk.blocked", "data": map[string]any{"policy": "max-exposure"}})
	deliveryID := notifier.DeliveryID(ev.ID, webhookID)
	s.waitStatus(deliveryID, "retrying")
	var d deliveryOut
	require.Eventually(t, func() bool {
		d = deliveryOut{}
		s.call("GET", "/v1/deliveries/"+deliveryID, nil, &d)
		return d.Live != nil && d.Live.Status == "retrying"
	}, 10*time.Second, 20*time.Millisecond, "a running delivery reports its live state")
	require.Equal(t, 1, d.Live.Attempt)
	require.NotNil(t, d.Live.NextAttemptAt)

	require.Equal(t, http.StatusOK, s.call("PATCH", "/v1/webhooks/"+webhookID, map[string]any{"active": false}, nil))
	var canceled *temporal.CanceledError
	require.ErrorAs(t, waitDelivery(t, ev.ID, webhookID), &canceled)
	require.Len(t, r.WaitFor(t, ev.ID, 1, time.Second), 1, "no POST after the webhook was deactivated")

	require.Equal(t, http.StatusOK, s.call("GET", "/v1/deliveries/"+deliveryID, nil, &d))
	require.Equal(t, "canceled", d.Status)
	require.Equal(t, "canceled: the webhook was deactivated", d.LastError)
	captureHistory(t, "delivery-canceled", deliveryID)

	// An inactive webhook's deliveries are not retried by hand.
	require.Equal(t, http.StatusConflict, s.call("POST", "/v1/deliveries/"+deliveryID+"/retry", nil, nil))
}

func TestEndToEnd_StatusCountsAgreeWithTemporal(t *testing.T) {
	s := startStack(t, map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "50ms"})
	ok := testenv.NewReceiver(t, 200)
	failing := testenv.NewReceiver(t, 200, 500)
	okID := s.createWebhook(ok.URL(), "", true, notifier.EventDecisionMade)
	failingID := s.createWebhook(failing.URL(), "", true, notifier.EventDecisionMade)
	for range 3 {
		ev := s.publish(map[string]any{"type": "decision.made", "data": map[string]any{"decision": "skip"}})
		require.NoError(t, waitDelivery(t, ev.ID, okID))
		require.Error(t, waitDelivery(t, ev.ID, failingID))
	}

	ctx := context.Background()
	for _, tc := range []struct{ webhookID, status string }{
		{okID, "succeeded"}, {failingID, "failed"}, {okID, "failed"}, {failingID, "succeeded"},
	} {
		var page struct {
			Items []deliveryOut `json:"items"`
		}
		require.Equal(t, http.StatusOK,
			s.call("GET", "/v1/webhooks/"+tc.webhookID+"/deliveries?status="+tc.status, nil, &page))
		// A delivery that succeeded at its first attempt has no
		// DeliveryStatus: it is a Completed workflow without one.
		query := fmt.Sprintf(`WebhookId=%q AND DeliveryStatus=%q`, tc.webhookID, tc.status)
		if tc.status == "succeeded" {
			query = fmt.Sprintf(`WebhookId=%q AND (DeliveryStatus="succeeded" OR `+
				`(ExecutionStatus="Completed" AND DeliveryStatus IS NULL))`, tc.webhookID)
		}
		require.Eventually(t, func() bool {
			n, err := devServer.Client().CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
				Namespace: "default", Query: query,
			})
			return err == nil && int(n.Count) == len(page.Items)
		}, 10*time.Second, 100*time.Millisecond, "Temporal's count for %s differs from the API's %d",
			query, len(page.Items))
	}
}

func TestEndToEnd_WorkerRestartMidRetry(t *testing.T) {
	s := startStack(t, map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "2s"})
	r := testenv.NewReceiver(t, 200, 503, 200)
	webhookID := s.createWebhook(r.URL(), "k", true, notifier.EventServiceDown)
	ev := s.publish(map[string]any{"type": "service.down", "data": map[string]any{"service": "inspector"}})
	deliveryID := notifier.DeliveryID(ev.ID, webhookID)
	s.waitStatus(deliveryID, "retrying")

	// The process stops between attempts; a new one on the same data and
	// task queue makes the next attempt.
	s.stop()
	s.start()
	got := r.WaitFor(t, ev.ID, 2, 30*time.Second)
	require.NoError(t, waitDelivery(t, ev.ID, webhookID))
	require.Len(t, r.WaitFor(t, ev.ID, 2, time.Second), 2)
	require.Equal(t, got[0].Body, got[1].Body)

	var d deliveryOut
	require.Equal(t, http.StatusOK, s.call("GET", "/v1/deliveries/"+deliveryID, nil, &d))
	require.Equal(t, "succeeded", d.Status)
	require.Equal(t, 2, d.Attempts)
}

// The process dies by kill -9 while a delivery waits for its retry: nothing
// is shut down or flushed. The delivery waits in Temporal, and the next
// process makes its next attempt, once.
func TestEndToEnd_WorkerKilledMidRetry(t *testing.T) {
	s := startProcess(t, "serve", map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "2s"})
	r := testenv.NewReceiver(t, 200, 503, 200)
	webhookID := s.createWebhook(r.URL(), "k", true, notifier.EventServiceDown)
	ev := s.publish(map[string]any{"type": "service.down", "data": map[string]any{"service": "inspector"}})
	deliveryID := notifier.DeliveryID(ev.ID, webhookID)
	s.waitStatus(deliveryID, "retrying")

	s.kill()
	s.start()
	d := s.waitStatus(deliveryID, "succeeded")
	require.Equal(t, 2, d.Attempts)
	got := r.WaitFor(t, ev.ID, 2, time.Second)
	require.Len(t, got, 2, "the attempt after the kill was made once")
	require.Equal(t, "2", got[1].Header.Get("X-Barfinex-Attempt"))
	require.Equal(t, got[0].Body, got[1].Body)
}

func TestEndToEnd_SecretNeverLeaks(t *testing.T) {
	s := startStack(t, map[string]string{
		"NOTIFIER_RETRY_INITIAL_INTERVAL": "50ms",
		"NOTIFIER_LOG_LEVEL":              "debug",
		"NOTIFIER_SECRET_KEY":             strings.Repeat("5a", 32),
	})
	const secret, rotated = "whsec-LEAKCHECK-4f1d9a", "whsec-LEAKCHECK-rotated-77c2"
	r := testenv.NewReceiver(t, 200, 500)
	webhookID := s.createWebhook(r.URL(), secret, true, notifier.EventOrderFilled)
	ev := s.publish(map[string]any{"type": "order.filled", "data": map[string]any{"symbol": "BTCUSDT"}})
	deliveryID := notifier.DeliveryID(ev.ID, webhookID)
	require.Error(t, waitDelivery(t, ev.ID, webhookID))

	r.Answer(200)
	require.Equal(t, http.StatusAccepted, s.call("POST", "/v1/deliveries/"+deliveryID+"/retry", nil, nil))
	s.waitStatus(deliveryID, "succeeded")
	got := r.WaitFor(t, ev.ID, 5, 10*time.Second)
	require.True(t, notifier.VerifySignature(secret, got[4].Body, got[4].Header.Get("X-Barfinex-Signature")))

	require.Equal(t, http.StatusOK, s.call("PATCH", "/v1/webhooks/"+webhookID, map[string]any{"secret": rotated}, nil))
	for _, path := range []string{"/v1/webhooks/" + webhookID, "/v1/webhooks", "/v1/deliveries/" + deliveryID,
		"/v1/webhooks/" + webhookID + "/deliveries"} {
		require.Equal(t, http.StatusOK, s.call("GET", path, nil, nil))
	}
	require.Equal(t, http.StatusOK, s.call("POST", "/v1/webhooks/"+webhookID+"/ping", nil, nil))

	require.Contains(t, s.logs.String(), webhookID, "the logs were captured")
	require.Contains(t, s.answers.String(), `"has_secret":true`, "the answers were captured")
	for _, sec := range []string{secret, rotated} {
		require.NotContains(t, s.logs.String(), sec, "a log line holds the secret")
		require.NotContains(t, s.answers.String(), sec, "an API answer holds the secret")
		requireNotInHistory(t, deliveryID, sec)
	}
}

// Two API processes and two workers on one PostgreSQL database and one
// Temporal server behave as one service.
func TestEndToEnd_ReplicasOnPostgres(t *testing.T) {
	env := map[string]string{
		"NOTIFIER_DATABASE_URL":           testenv.PostgresURL(t),
		"NOTIFIER_TASK_QUEUE":             "replicas-" + t.Name(),
		"NOTIFIER_RETRY_INITIAL_INTERVAL": "200ms",
	}
	api1, api2 := startRole(t, "api", env), startRole(t, "api", env)
	w1 := startRole(t, "worker", env)
	startRole(t, "worker", env)

	steady := testenv.NewReceiver(t)
	flaky := testenv.NewReceiver(t, 200, 500, 200)
	steadyID := api1.createWebhook(steady.URL(), "s1", true, notifier.EventOrderFilled)
	flakyID := api2.createWebhook(flaky.URL(), "s2", true, notifier.EventOrderFilled)

	// Both APIs take events, some of them the same event twice at once.
	var ids []string
	for i := range 12 {
		body := map[string]any{"type": "order.filled", "data": map[string]any{"symbol": "BTCUSDT", "i": i}}
		if i%3 == 0 {
			body["id"] = fmt.Sprintf("fill-%d", i)
			var wg sync.WaitGroup
			for _, api := range []*stack{api1, api2} {
				wg.Add(1)
				go func() { defer wg.Done(); api.publish(body) }()
			}
			wg.Wait()
			ids = append(ids, body["id"].(string))
			continue
		}
		api := []*stack{api1, api2}[i%2]
		ids = append(ids, api.publish(body).ID)
		if i == 6 {
			w1.stop() // one worker goes away; the other carries on
		}
	}

	for _, id := range ids {
		require.NoError(t, waitDelivery(t, id, steadyID))
		require.NoError(t, waitDelivery(t, id, flakyID))
		require.Len(t, steady.WaitFor(t, id, 1, time.Second), 1, "event %s delivered once", id)
	}
	require.Len(t, steady.Requests(), len(ids)+1, "nothing delivered twice") // + the ping

	// Changes of different fields through different APIs both stand.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		api1.call("PATCH", "/v1/webhooks/"+steadyID, map[string]any{"name": "renamed"}, nil)
	}()
	go func() {
		defer wg.Done()
		api2.call("PATCH", "/v1/webhooks/"+steadyID, map[string]any{"events": []string{"order.placed"}}, nil)
	}()
	wg.Wait()
	var w struct {
		Name   string   `json:"name"`
		Events []string `json:"events"`
	}
	require.Equal(t, http.StatusOK, api2.call("GET", "/v1/webhooks/"+steadyID, nil, &w))
	require.Equal(t, "renamed", w.Name)
	require.Equal(t, []string{"order.placed"}, w.Events)
}

// A delivery whose workflow an operator terminated while it waited is not
// left stranded: the API no longer reports it live, and retries it.
func TestEndToEnd_TerminatedDeliveryCanBeRetried(t *testing.T) {
	s := startStack(t, map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "1m"})
	r := testenv.NewReceiver(t, 200, 500, 200)
	webhookID := s.createWebhook(r.URL(), "k", true, notifier.EventOrderPlaced)
	ev := s.publish(map[string]any{"type": "order.placed", "data": map[string]any{"symbol": "BTCUSDT"}})
	deliveryID := notifier.DeliveryID(ev.ID, webhookID)
	s.waitStatus(deliveryID, "retrying")
	require.Equal(t, http.StatusConflict, s.call("POST", "/v1/deliveries/"+deliveryID+"/retry", nil, nil),
		"a delivery still running is not retried")
	require.NoError(t, devServer.Client().TerminateWorkflow(context.Background(), deliveryID, "", "operator"))

	var d deliveryOut
	require.Equal(t, http.StatusOK, s.call("GET", "/v1/deliveries/"+deliveryID, nil, &d))
	require.Nil(t, d.Live, "a terminated run is not live")
	require.Equal(t, http.StatusAccepted, s.call("POST", "/v1/deliveries/"+deliveryID+"/retry", nil, nil))
	d = s.waitStatus(deliveryID, "succeeded")
	require.Equal(t, 2, d.Runs)
}

// An event the notifier stored itself (as alert rules do) is fanned out by
// starting its EventWorkflow: a delivery to each subscribed, active webhook.
func TestEndToEnd_EventWorkflowFansOutStoredEvent(t *testing.T) {
	s := startStack(t, nil)
	subscribed := testenv.NewReceiver(t)
	alsoSubscribed := testenv.NewReceiver(t)
	inactive := testenv.NewReceiver(t)
	a := s.createWebhook(subscribed.URL(), "a", true, notifier.EventServiceDown)
	b := s.createWebhook(alsoSubscribed.URL(), "", true, notifier.EventServiceDown)
	s.createWebhook(inactive.URL(), "c", false, notifier.EventServiceDown)

	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(s.env["NOTIFIER_DATA_DIR"], "notifier.db"))
	require.NoError(t, err)
	ev, err := notifier.NewEvent("", notifier.EventServiceDown, nil,
		json.RawMessage(`{"service":"inspector"}`), time.Now())
	require.NoError(t, err)
	body, err := ev.Envelope()
	require.NoError(t, err)
	_, _, err = store.CreateEvent(ctx, ev, body)
	require.NoError(t, err)
	require.NoError(t, store.Close())

	run, err := devServer.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.EventWorkflowID(ev.ID), TaskQueue: s.env["NOTIFIER_TASK_QUEUE"],
	}, workflows.EventWorkflow, workflows.EventInput{EventID: ev.ID, EventType: ev.Type})
	require.NoError(t, err)
	var res workflows.EventResult
	require.NoError(t, run.Get(ctx, &res))
	require.Equal(t, 2, res.Started)
	for _, id := range []string{a, b} {
		require.NoError(t, waitWorkflow(t, notifier.DeliveryID(ev.ID, id)))
	}
	require.Len(t, subscribed.WaitFor(t, ev.ID, 1, time.Second), 1)
	require.Len(t, alsoSubscribed.WaitFor(t, ev.ID, 1, time.Second), 1)
	for _, req := range inactive.Requests() {
		require.NotEqual(t, ev.ID, req.Header.Get("X-Barfinex-Event-Id"))
	}
	captureHistory(t, "event-two-webhooks", workflows.EventWorkflowID(ev.ID))
}

// An event with more webhooks than one fan-out page reaches all of them.
func TestEndToEnd_FanOutBeyondOnePage(t *testing.T) {
	s := startStack(t, nil)
	r := testenv.NewReceiver(t)
	// Webhooks straight into the store the process uses: a test ping each
	// would only slow this down.
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(s.env["NOTIFIER_DATA_DIR"], "notifier.db"))
	require.NoError(t, err)
	n := activities.FanOutPage + 20
	for range n {
		require.NoError(t, store.CreateWebhook(context.Background(), &notifier.Webhook{
			Name: "many", URL: r.URL(), Active: true, Channel: notifier.Channel{Type: "generic"},
			Events: []notifier.EventType{notifier.EventDeploymentCreated},
		}))
	}
	require.NoError(t, store.Close())

	ev := s.publish(map[string]any{"type": "deployment.created", "data": map[string]any{"deployment_id": "dep-9"}})
	// Waiting on the event's workflow follows it through continue-as-new.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	require.NoError(t, devServer.Client().GetWorkflow(ctx, workflows.EventWorkflowID(ev.ID), "").Get(ctx, nil))
	require.Len(t, r.WaitFor(t, ev.ID, n, 4*time.Minute), n)
}

func TestEndToEnd_WorkerServesItsMetrics(t *testing.T) {
	dir, metricsAddr := t.TempDir(), freeAddr(t)
	api := startRole(t, "api", map[string]string{"NOTIFIER_DATA_DIR": dir})
	startRole(t, "worker", map[string]string{"NOTIFIER_DATA_DIR": dir, "NOTIFIER_METRICS_ADDR": metricsAddr})
	r := testenv.NewReceiver(t)
	hook := api.createWebhook(r.URL(), "", true, notifier.EventOrderFilled)
	ev := api.publish(map[string]any{"type": "order.filled", "data": map[string]any{"symbol": "X"}})
	require.NoError(t, waitDelivery(t, ev.ID, hook))

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		// The tests run every process in one test binary, which shares the
		// counters: their presence is what this can check.
		return strings.Contains(string(body), `notifier_deliveries_total{outcome="succeeded"}`) &&
			strings.Contains(string(body), "temporal_")
	}, 10*time.Second, 100*time.Millisecond, "the worker's own metrics")
}

func TestEndToEnd_DeactivatedDuringAcceptedAttemptEndsSucceeded(t *testing.T) {
	s := startStack(t, map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "1s"})
	// The receiver refuses the first attempt and takes two seconds to accept
	// the second; the webhook is deactivated while it takes them.
	inSecond := make(chan struct{})
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Barfinex-Event") == "ping" {
			return
		}
		switch attempts.Add(1) {
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			close(inSecond)
			time.Sleep(2 * time.Second)
		}
	}))
	t.Cleanup(srv.Close)
	webhookID := s.createWebhook(srv.URL, "", true, notifier.EventOrderFilled)
	ev := s.publish(map[string]any{"type": "order.filled", "data": map[string]any{"symbol": "X"}})
	select {
	case <-inSecond:
	case <-time.After(30 * time.Second):
		t.Fatal("no second attempt")
	}
	require.Equal(t, http.StatusOK, s.call("PATCH", "/v1/webhooks/"+webhookID,
		map[string]any{"active": false}, nil))

	require.NoError(t, waitDelivery(t, ev.ID, webhookID), "a Completed workflow, not a Canceled one")
	var d deliveryOut
	require.Equal(t, http.StatusOK, s.call("GET", "/v1/deliveries/"+
		notifier.DeliveryID(ev.ID, webhookID), nil, &d))
	require.Equal(t, "succeeded", d.Status)
	require.Equal(t, 2, d.Attempts)
	require.EqualValues(t, 2, attempts.Load())
}
