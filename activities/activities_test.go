package activities_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/egress"
	"github.com/barfinex/notifier/internal/testenv"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

func post(t *testing.T, s *activities.Sender, url string) *notifier.Attempt {
	t.Helper()
	return s.Post(context.Background(), activities.Request{
		URL: url, Body: []byte(`{"id":"evt_1"}`), Headers: http.Header{"Content-Type": {"application/json"}},
	})
}

func TestSender(t *testing.T) {
	open := egress.Policy{AllowPrivate: true}
	local := activities.NewSender(activities.SenderOptions{Policy: open, Timeout: time.Second})

	t.Run("OK", func(t *testing.T) {
		r := testenv.NewReceiver(t, http.StatusNoContent)
		att := post(t, local, r.URL())
		require.True(t, att.OK())
		require.Equal(t, 204, att.StatusCode)
		require.Equal(t, r.URL(), att.URL)
		require.Equal(t, `{"id":"evt_1"}`, string(r.Requests()[0].Body))
	})

	t.Run("ErrStatus", func(t *testing.T) {
		r := testenv.NewReceiver(t, http.StatusInternalServerError)
		att := post(t, local, r.URL())
		require.False(t, att.OK())
		require.Equal(t, notifier.ErrClassHTTPStatus, att.ErrorClass)
		require.Equal(t, 500, att.StatusCode)
		require.Equal(t, `{"received":1}`, att.ResponseBody)
		require.Equal(t, "application/json", att.ResponseHeaders["Content-Type"])
	})

	t.Run("ErrRedirectNotFollowed", func(t *testing.T) {
		target := testenv.NewReceiver(t)
		srv := httptest.NewServer(http.RedirectHandler(target.URL(), http.StatusTemporaryRedirect))
		defer srv.Close()
		att := post(t, local, srv.URL)
		require.Equal(t, notifier.ErrClassRedirect, att.ErrorClass)
		require.Equal(t, 307, att.StatusCode)
		require.Contains(t, att.Error, target.URL())
		require.Empty(t, target.Requests(), "the redirect was not followed")
	})

	t.Run("ErrTimeout", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-release
		}))
		defer srv.Close()
		defer close(release) // runs first, so that Close does not wait forever
		att := post(t, local, srv.URL)
		require.Equal(t, notifier.ErrClassTimeout, att.ErrorClass, att.Error)
		require.Less(t, att.Duration, 3*time.Second, "the attempt ends at its deadline")
	})

	t.Run("ErrBodyStallsAfterHeaders", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			w.(http.Flusher).Flush()
			<-release
		}))
		defer srv.Close()
		defer close(release)
		att := post(t, local, srv.URL)
		require.False(t, att.OK())
		require.Equal(t, 502, att.StatusCode)
	})

	t.Run("ErrProtocolSwitchEndsTheAttempt", func(t *testing.T) {
		addr := rawServer(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
		att := post(t, local, "http://"+addr+"/")
		require.Equal(t, notifier.ErrClassHTTPStatus, att.ErrorClass, att.Error)
		require.Equal(t, 101, att.StatusCode)
		require.Less(t, att.Duration, 3*time.Second)
	})

	t.Run("Err2xxBodyStalls", func(t *testing.T) {
		addr := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		att := post(t, local, "http://"+addr+"/")
		require.False(t, att.OK(), "a 2xx counts once its body has arrived")
		require.Equal(t, notifier.ErrClassTimeout, att.ErrorClass, att.Error)
		require.Less(t, att.Duration, 3*time.Second)
	})

	t.Run("ReceiverTextIsCapped", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "https://e.com/"+strings.Repeat("l", 30<<10))
			w.Header().Set("X-"+strings.Repeat("N", 20<<10), "v")
			w.WriteHeader(http.StatusFound)
		}))
		defer srv.Close()
		att := post(t, local, srv.URL)
		require.Equal(t, notifier.ErrClassRedirect, att.ErrorClass)
		require.Less(t, len(att.Error), 2048)
		for k, v := range att.ResponseHeaders {
			require.LessOrEqual(t, len(k), 128+len("…"))
			require.LessOrEqual(t, len(v), 512+len("…"))
		}
	})

	t.Run("ErrHeadersTooLarge", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", strings.Repeat("l", 1<<20))
			w.WriteHeader(http.StatusFound)
		}))
		defer srv.Close()
		att := post(t, local, srv.URL)
		require.False(t, att.OK())
		require.Less(t, len(att.Error), 2048)
	})

	t.Run("HugeBodyIsCut", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for range 256 { // 16 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}))
		defer srv.Close()
		att := post(t, local, srv.URL)
		require.True(t, att.OK())
		require.Len(t, att.ResponseBody, activities.MaxResponseBody)
	})

	t.Run("ErrConnectionRefused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		att := post(t, local, url)
		require.Equal(t, notifier.ErrClassConnection, att.ErrorClass, att.Error)
	})

	t.Run("ErrInternalAddressRefused", func(t *testing.T) {
		guarded := activities.NewSender(activities.SenderOptions{Timeout: time.Second})
		r := testenv.NewReceiver(t)
		att := post(t, guarded, r.URL())
		require.Equal(t, notifier.ErrClassRefused, att.ErrorClass, att.Error)
		require.Empty(t, r.Requests())
	})

	t.Run("ErrRedirectToInternalNotFollowed", func(t *testing.T) {
		target := testenv.NewReceiver(t)
		for _, code := range []int{301, 302, 303, 307, 308} {
			srv := httptest.NewServer(http.RedirectHandler("http://169.254.169.254/latest/meta-data", code))
			att := post(t, local, srv.URL)
			srv.Close()
			require.Equal(t, notifier.ErrClassRedirect, att.ErrorClass)
			require.Equal(t, code, att.StatusCode)
			require.Contains(t, att.Error, "169.254.169.254")
		}
		require.Empty(t, target.Requests())
	})

	t.Run("ErrSelfSignedCertificate", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		defer srv.Close()
		att := post(t, local, srv.URL)
		require.Equal(t, notifier.ErrClassTLS, att.ErrorClass, att.Error)
	})

	t.Run("GzipBombIsNotExpanded", func(t *testing.T) {
		var bomb bytes.Buffer
		zw := gzip.NewWriter(&bomb)
		zeros := make([]byte, 1<<20)
		for range 64 { // 64 MiB of zeros, a few KiB compressed
			_, _ = zw.Write(zeros)
		}
		require.NoError(t, zw.Close())
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write(bomb.Bytes())
		}))
		defer srv.Close()
		att := post(t, local, srv.URL)
		require.Equal(t, 500, att.StatusCode)
		require.LessOrEqual(t, len(att.ResponseBody), 3*activities.MaxResponseBody,
			"the body is kept raw and cut, never inflated")
	})

	t.Run("EndlessBodyIsCutAndBounded", func(t *testing.T) {
		written := make(chan int64, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chunk := bytes.Repeat([]byte("x"), 32<<10)
			var n int64
			defer func() { written <- n }()
			for n < 1<<30 {
				m, err := w.Write(chunk)
				n += int64(m)
				if err != nil {
					return
				}
			}
		}))
		defer srv.Close()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		att := post(t, local, srv.URL)
		runtime.GC()
		runtime.ReadMemStats(&after)
		require.True(t, att.OK())
		require.Len(t, att.ResponseBody, activities.MaxResponseBody)
		require.Less(t, int64(after.HeapAlloc)-int64(before.HeapAlloc), int64(16<<20), "heap stays bounded")
		require.Less(t, <-written, int64(1<<30), "the sender stopped reading")
	})

	t.Run("SlowHostIsBounded", func(t *testing.T) {
		release, arrived := make(chan struct{}), make(chan struct{}, 2)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			<-release
		}))
		defer srv.Close()
		released := false
		defer func() {
			if !released {
				close(release)
			}
		}()
		s := activities.NewSender(activities.SenderOptions{
			Policy: egress.Policy{AllowPrivate: true}, Timeout: 5 * time.Second, MaxPerHost: 2,
		})
		results := make(chan *notifier.Attempt, 2)
		for range 2 {
			go func() { results <- post(t, s, srv.URL) }()
		}
		<-arrived
		<-arrived
		// A third attempt to the same host is turned away at once, without
		// taking a connection, while the first two hang.
		att := post(t, s, srv.URL)
		require.Equal(t, notifier.ErrClassThrottled, att.ErrorClass)
		other := testenv.NewReceiver(t)
		require.True(t, post(t, s, other.URL()).OK(), "other hosts are not held up")
		close(release)
		released = true
		for range 2 {
			require.True(t, (<-results).OK())
		}
		require.True(t, post(t, s, srv.URL).OK(), "places are given back")
	})
}

// rawServer answers every connection with the given bytes, then holds it
// open until the test ends.
func rawServer(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 64<<10)
				_, _ = conn.Read(buf)
				_, _ = conn.Write([]byte(answer))
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

type fixture struct {
	store *sqlstore.Store
	acts  *activities.Activities
	env   *testsuite.TestActivityEnvironment
}

func newFixture(t *testing.T) *fixture {
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "n.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	acts := &activities.Activities{
		Store: store,
		Sender: activities.NewSender(activities.SenderOptions{
			Policy: egress.Policy{AllowPrivate: true}, Timeout: time.Second,
		}),
		Retry: activities.DefaultRetry,
	}
	env.RegisterActivity(acts)
	return &fixture{store: store, acts: acts, env: env}
}

// deliveryTo creates a webhook for url and an event fanned out to it, and
// returns the first attempt's input and the envelope.
func (f *fixture) deliveryTo(t *testing.T, url, secret string,
	active bool) (activities.DeliverInput, []byte) {
	ctx := context.Background()
	w := &notifier.Webhook{Name: "desk", URL: url, Secret: secret, Active: true,
		Events: []notifier.EventType{notifier.EventOrderFilled}}
	require.NoError(t, f.store.CreateWebhook(ctx, w))
	ev, err := notifier.NewEvent("", notifier.EventOrderFilled, nil, []byte(`{"symbol":"BTCUSDT"}`), time.Now())
	require.NoError(t, err)
	body, err := ev.Envelope()
	require.NoError(t, err)
	_, _, err = f.store.CreateEvent(ctx, ev, body)
	require.NoError(t, err)
	_, err = f.store.FanOut(ctx, ev.ID, "", 1000)
	require.NoError(t, err)
	if !active {
		_, err = f.store.UpdateWebhook(ctx, w.ID, &notifier.WebhookUpdate{Active: &active})
		require.NoError(t, err)
	}
	return activities.DeliverInput{
		DeliveryID: notifier.DeliveryID(ev.ID, w.ID), EventID: ev.ID, EventType: ev.Type,
		WebhookID: w.ID, Attempt: 1, Retry: activities.DefaultRetry,
	}, body
}

func TestDeliver_SignsAndRecords(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t)
	in, body := f.deliveryTo(t, r.URL(), "whsec-Ü-🔑", true)

	val, err := f.env.ExecuteActivity(f.acts.Deliver, in)
	require.NoError(t, err)
	var res activities.DeliverResult
	require.NoError(t, val.Get(&res))
	require.True(t, res.Recorded)

	req := r.Requests()[0]
	require.Equal(t, body, req.Body)
	require.Equal(t, "application/json", req.Header.Get("Content-Type"))
	require.True(t, strings.HasPrefix(req.Header.Get("User-Agent"), "Barfinex-Notifier/"))
	require.Equal(t, "order.filled", req.Header.Get("X-Barfinex-Event"))
	require.Equal(t, in.DeliveryID, req.Header.Get("X-Barfinex-Delivery"))
	require.True(t, notifier.VerifySignature("whsec-Ü-🔑", req.Body, req.Header.Get("X-Barfinex-Signature")))

	d, err := f.store.Delivery(context.Background(), in.DeliveryID)
	require.NoError(t, err)
	require.Equal(t, notifier.DeliverySucceeded, d.Status)
	atts, err := f.store.Attempts(context.Background(), in.DeliveryID)
	require.NoError(t, err)
	require.Len(t, atts, 1)
	require.Equal(t, 200, atts[0].StatusCode)
	require.Equal(t, r.URL(), atts[0].URL)
}

func TestDeliver_NoSecretNoSignature(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t)
	in, _ := f.deliveryTo(t, r.URL(), "", true)
	_, err := f.env.ExecuteActivity(f.acts.Deliver, in)
	require.NoError(t, err)
	_, signed := r.Requests()[0].Header["X-Barfinex-Signature"]
	require.False(t, signed)
}

func TestDeliver_FailedAttemptIsLogged(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t, http.StatusServiceUnavailable)
	in, _ := f.deliveryTo(t, r.URL(), "k", true)

	_, err := f.env.ExecuteActivity(f.acts.Deliver, in)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, activities.ErrAttemptFailed, appErr.Type())
	var failure activities.AttemptFailure
	require.NoError(t, appErr.Details(&failure))
	want := activities.AttemptFailure{StatusCode: 503, ErrorClass: notifier.ErrClassHTTPStatus}
	require.Equal(t, want, failure)

	d, err := f.store.Delivery(context.Background(), in.DeliveryID)
	require.NoError(t, err)
	require.Equal(t, notifier.DeliveryRetrying, d.Status)
	require.Equal(t, 503, d.LastStatusCode)
	require.NotNil(t, d.NextAttemptAt)
	require.WithinDuration(t, time.Now().Add(10*time.Second), *d.NextAttemptAt, 5*time.Second)
}

func TestDeliver_InactiveWebhookGetsNothing(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t)
	in, _ := f.deliveryTo(t, r.URL(), "k", false)

	_, err := f.env.ExecuteActivity(f.acts.Deliver, in)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, activities.ErrWebhookInactive, appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.Empty(t, r.Requests())
}

func TestDeliver_DeletedWebhookGetsNothing(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t)
	in, _ := f.deliveryTo(t, r.URL(), "k", true)
	require.NoError(t, f.store.DeleteWebhook(context.Background(), in.WebhookID))

	_, err := f.env.ExecuteActivity(f.acts.Deliver, in)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, activities.ErrWebhookDeleted, appErr.Type())
	require.Empty(t, r.Requests())
}

func TestRetryConfig_Delay(t *testing.T) {
	r := activities.DefaultRetry
	require.Equal(t, 10*time.Second, r.Delay(1))
	require.Equal(t, 30*time.Second, r.Delay(2))
	require.Equal(t, 90*time.Second, r.Delay(3))
}

// A panic in an activity ends that attempt with an error, as any failure
// would; the worker goes on.
func TestDeliver_PanicIsAFailedAttempt(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t)
	in, _ := f.deliveryTo(t, r.URL(), "k", true)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	broken := &activities.Activities{Store: f.store, Retry: activities.DefaultRetry} // no Sender
	env.RegisterActivity(broken)

	_, err := env.ExecuteActivity(broken.Deliver, in)
	var panicErr *temporal.PanicError
	require.ErrorAs(t, err, &panicErr)

	_, err = f.env.ExecuteActivity(f.acts.Deliver, in)
	require.NoError(t, err, "the next attempt runs as usual")
}

func TestDeliver_ThroughChannel(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	t.Run("SlackGetsItsFormatSigned", func(t *testing.T) {
		var got []byte
		var sig string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, _ = io.ReadAll(r.Body)
			sig = r.Header.Get("X-Barfinex-Signature")
			_, _ = io.WriteString(w, "ok")
		}))
		defer srv.Close()
		in, envelope := f.deliveryTo(t, srv.URL+"/services/T1/B1/secrettoken", "k", true)
		slack := notifier.Channel{Type: "slack"}
		_, err := f.store.UpdateWebhook(ctx, in.WebhookID, &notifier.WebhookUpdate{Channel: &slack})
		require.NoError(t, err)

		_, err = f.env.ExecuteActivity(f.acts.Deliver, in)
		require.NoError(t, err)
		require.NotEqual(t, envelope, got)
		require.Contains(t, string(got), `"blocks"`)
		require.True(t, notifier.VerifySignature("k", got, sig), "the signature covers the body sent")
		atts, err := f.store.Attempts(ctx, in.DeliveryID)
		require.NoError(t, err)
		require.Equal(t, string(got), atts[0].RequestBody)
		require.NotContains(t, atts[0].URL, "secrettoken", "the log masks the token in the URL")
	})

	t.Run("TelegramFallsBackToPlainText", func(t *testing.T) {
		var bodies []map[string]any
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var m map[string]any
			_ = json.NewDecoder(r.Body).Decode(&m)
			bodies = append(bodies, m)
			if m["parse_mode"] == "HTML" {
				w.WriteHeader(400)
				_, _ = io.WriteString(w, `{"ok":false,"error_code":400,`+
					`"description":"Bad Request: can't parse entities: x"}`)
				return
			}
			_, _ = io.WriteString(w, `{"ok":true,"result":{}}`)
		}))
		defer srv.Close()
		in, _ := f.deliveryTo(t, srv.URL+"/bot1:x/sendMessage", "", true)
		tg := notifier.Channel{Type: "telegram", ChatID: "42", ParseMode: "HTML"}
		_, err := f.store.UpdateWebhook(ctx, in.WebhookID, &notifier.WebhookUpdate{Channel: &tg})
		require.NoError(t, err)

		_, err = f.env.ExecuteActivity(f.acts.Deliver, in)
		require.NoError(t, err)
		require.Len(t, bodies, 2)
		require.NotContains(t, bodies[1], "parse_mode")
	})

	t.Run("RateLimitWaitIsLogged", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "20")
			w.WriteHeader(http.StatusTooManyRequests)
		}))
		defer srv.Close()
		in, _ := f.deliveryTo(t, srv.URL, "", true)
		_, err := f.env.ExecuteActivity(f.acts.Deliver, in)
		var appErr *temporal.ApplicationError
		require.ErrorAs(t, err, &appErr)
		var failure activities.AttemptFailure
		require.NoError(t, appErr.Details(&failure))
		require.Equal(t, 20*time.Second, failure.RetryAfter)
		d, err := f.store.Delivery(ctx, in.DeliveryID)
		require.NoError(t, err)
		require.WithinDuration(t, time.Now().Add(20*time.Second), *d.NextAttemptAt, 5*time.Second)
	})
}

// A worker that dies after the receiver accepted an attempt and the attempt
// was logged, but before Temporal heard of it, leaves the activity to be
// retried: the retry finds the logged success and sends nothing again.
func TestDeliver_RetryAfterLostCompletionSendsNothing(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t)
	in, _ := f.deliveryTo(t, r.URL(), "k", true)

	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{
		Interceptors: []interceptor.WorkerInterceptor{&loseFirstCompletion{}},
	})
	env.RegisterActivity(f.acts)
	env.RegisterWorkflow(workflows.DeliveryWorkflow)
	env.ExecuteWorkflow(workflows.DeliveryWorkflow, workflows.DeliveryInput{
		DeliveryID: in.DeliveryID, EventID: in.EventID, EventType: in.EventType,
		WebhookID: in.WebhookID, Retry: in.Retry,
	})
	require.NoError(t, env.GetWorkflowError())
	var res workflows.DeliveryResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, notifier.DeliverySucceeded, res.Status)
	require.Equal(t, 1, res.Attempts)

	require.Len(t, r.Requests(), 1, "the receiver got the event once")
	atts, err := f.store.Attempts(context.Background(), in.DeliveryID)
	require.NoError(t, err)
	require.Len(t, atts, 1)
	require.Equal(t, 200, atts[0].StatusCode)
}

// loseFirstCompletion runs the first try of each Deliver activity and then
// reports it failed, as if its worker had died before it could report.
type loseFirstCompletion struct {
	interceptor.WorkerInterceptorBase
}

func (*loseFirstCompletion) InterceptActivity(ctx context.Context,
	next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	i := &lostCompletion{}
	i.Next = next
	return i
}

type lostCompletion struct {
	interceptor.ActivityInboundInterceptorBase
}

func (i *lostCompletion) ExecuteActivity(ctx context.Context,
	in *interceptor.ExecuteActivityInput) (any, error) {
	res, err := i.Next.ExecuteActivity(ctx, in)
	if info := activity.GetInfo(ctx); info.ActivityType.Name == "Deliver" && info.Attempt == 1 {
		return nil, errors.New("worker lost before it reported")
	}
	return res, err
}

func TestFinishDelivery_SuccessOfTheRunStands(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t, http.StatusOK)
	in, _ := f.deliveryTo(t, r.URL(), "", true)
	_, err := f.env.ExecuteActivity(f.acts.Deliver, in)
	require.NoError(t, err)

	// The webhook is deactivated; its workflow, canceled while the attempt
	// was under way, goes to mark the delivery canceled.
	_, err = f.env.ExecuteActivity(f.acts.FinishDelivery, activities.FinishDeliveryInput{
		DeliveryID: in.DeliveryID, WebhookID: in.WebhookID, Status: notifier.DeliveryCanceled,
	})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, activities.ErrAlreadySucceeded, appErr.Type())
	d, err := f.store.Delivery(context.Background(), in.DeliveryID)
	require.NoError(t, err)
	require.Equal(t, notifier.DeliverySucceeded, d.Status)
}
