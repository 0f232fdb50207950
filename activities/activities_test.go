package activities_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/internal/testenv"
	"github.com/barfinex/notifier/sqlstore"
)

func post(t *testing.T, s *activities.Sender, url string) *notifier.Attempt {
	t.Helper()
	return s.Post(context.Background(), activities.Request{
		URL: url, Body: []byte(`{"id":"evt_1"}`), Headers: http.Header{"Content-Type": {"application/json"}},
	})
}

func TestSender(t *testing.T) {
	local := activities.NewSender(activities.SenderOptions{AllowPrivate: true, Timeout: time.Second})

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
		defer close(release)
		att := post(t, local, srv.URL)
		require.Equal(t, notifier.ErrClassTimeout, att.ErrorClass, att.Error)
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
		Store:  store,
		Sender: activities.NewSender(activities.SenderOptions{AllowPrivate: true, Timeout: time.Second}),
		Retry:  activities.DefaultRetry,
	}
	env.RegisterActivity(acts)
	return &fixture{store: store, acts: acts, env: env}
}

// deliveryTo creates a webhook for url and an event fanned out to it.
func (f *fixture) deliveryTo(t *testing.T, url, secret string, active bool) activities.DeliverInput {
	ctx := context.Background()
	w := &notifier.Webhook{Name: "desk", URL: url, Secret: secret, Active: true,
		Events: []notifier.EventType{notifier.EventOrderFilled}}
	require.NoError(t, f.store.CreateWebhook(ctx, w))
	ev, err := notifier.NewEvent("", notifier.EventOrderFilled, time.Time{}, []byte(`{"symbol":"BTCUSDT"}`), time.Now())
	require.NoError(t, err)
	body, err := ev.Envelope()
	require.NoError(t, err)
	_, _, err = f.store.CreateEvent(ctx, ev, body)
	require.NoError(t, err)
	_, err = f.store.FanOut(ctx, ev.ID)
	require.NoError(t, err)
	if !active {
		_, err = f.store.UpdateWebhook(ctx, w.ID, &notifier.WebhookUpdate{Active: &active})
		require.NoError(t, err)
	}
	return activities.DeliverInput{
		DeliveryID: notifier.DeliveryID(ev.ID, w.ID), EventID: ev.ID, EventType: ev.Type,
		WebhookID: w.ID, Body: body, Attempt: 1, Retry: activities.DefaultRetry,
	}
}

func TestDeliver_SignsAndRecords(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t)
	in := f.deliveryTo(t, r.URL(), "whsec-Ü-🔑", true)

	val, err := f.env.ExecuteActivity(f.acts.Deliver, in)
	require.NoError(t, err)
	var res activities.DeliverResult
	require.NoError(t, val.Get(&res))
	require.True(t, res.Recorded)

	req := r.Requests()[0]
	require.Equal(t, in.Body, req.Body)
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
	in := f.deliveryTo(t, r.URL(), "", true)
	_, err := f.env.ExecuteActivity(f.acts.Deliver, in)
	require.NoError(t, err)
	_, signed := r.Requests()[0].Header["X-Barfinex-Signature"]
	require.False(t, signed)
}

func TestDeliver_FailedAttemptIsLogged(t *testing.T) {
	f := newFixture(t)
	r := testenv.NewReceiver(t, http.StatusServiceUnavailable)
	in := f.deliveryTo(t, r.URL(), "k", true)

	_, err := f.env.ExecuteActivity(f.acts.Deliver, in)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, activities.ErrAttemptFailed, appErr.Type())
	var failure activities.AttemptFailure
	require.NoError(t, appErr.Details(&failure))
	require.Equal(t, activities.AttemptFailure{StatusCode: 503, ErrorClass: notifier.ErrClassHTTPStatus}, failure)

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
	in := f.deliveryTo(t, r.URL(), "k", false)

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
	in := f.deliveryTo(t, r.URL(), "k", true)
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
