package apiserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/apiserver"
	"github.com/barfinex/notifier/egress"
	"github.com/barfinex/notifier/internal/testenv"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/worker"
)

var devServer *testsuite.DevServer

func TestMain(m *testing.M) {
	os.Exit(testenv.MainWithDevServer(m, func(srv *testsuite.DevServer) { devServer = srv }))
}

const token = "api-test-token"

type api struct {
	t     *testing.T
	url   string
	store *sqlstore.Store
	logs  *testenv.SyncBuffer
}

// newAPI serves the API over a fresh store, with a worker of its own. It
// lets webhooks point at local receivers.
func newAPI(t *testing.T) *api {
	t.Helper()
	return newAPIWith(t, egress.Policy{AllowPrivate: true}, devServer.Client())
}

func newAPIWith(t *testing.T, policy egress.Policy, tc client.Client) *api {
	t.Helper()
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "n.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	return newAPIOnStore(t, policy, tc, store)
}

// newAPIOnStore serves the API over store, with a worker of its own.
func newAPIOnStore(t *testing.T, policy egress.Policy, tc client.Client, store *sqlstore.Store) *api {
	t.Helper()
	queue := "api-" + t.Name()
	w := worker.New(devServer.Client(), queue, &activities.Activities{
		Store:  store,
		Sender: activities.NewSender(activities.SenderOptions{Policy: policy, Timeout: 2 * time.Second}),
		Retry:  activities.DefaultRetry,
	}, worker.Options{})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	logs := &testenv.SyncBuffer{}
	srv, err := apiserver.New(store, tc, apiserver.Config{
		Token:         token,
		URLPolicy:     notifier.URLPolicy{AllowHTTP: policy.AllowPrivate},
		Egress:        policy,
		MaxEventBytes: 1024,
		TaskQueue:     queue,
	}, slog.New(slog.NewJSONHandler(logs, nil)))
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &api{t: t, url: ts.URL, store: store, logs: logs}
}

type response struct {
	status int
	body   map[string]any
	raw    string
}

// do sends a request with the test token; raw is the body as is.
func (a *api) do(method, path, raw string) response {
	return a.doAuth(method, path, raw, "Bearer "+token)
}

func (a *api) doAuth(method, path, raw, auth string) response {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(raw))
	require.NoError(a.t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	out := response{status: resp.StatusCode, raw: string(b)}
	if len(b) > 0 {
		require.NoError(a.t, json.Unmarshal(b, &out.body), string(b))
	}
	return out
}

func (r response) errorCode() string {
	e, _ := r.body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func (r response) errorField() string {
	e, _ := r.body["error"].(map[string]any)
	f, _ := e["field"].(string)
	return f
}

func (a *api) mustCreate(url string, extra string) map[string]any {
	a.t.Helper()
	r := a.do("POST", "/v1/webhooks", `{"name":"desk","url":"`+url+`","events":["order.filled"]`+extra+`}`)
	require.Equal(a.t, http.StatusCreated, r.status, r.raw)
	return r.body
}

func TestAuth(t *testing.T) {
	a := newAPI(t)
	for _, tc := range []struct{ name, auth string }{
		{"ErrMissing", ""},
		{"ErrWrong", "Bearer nope"},
		{"ErrScheme", "Basic " + token},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.doAuth("GET", "/v1/webhooks", "", tc.auth)
			require.Equal(t, http.StatusUnauthorized, r.status)
			require.Equal(t, "unauthorized", r.errorCode())
		})
	}
	t.Run("SchemeIsCaseInsensitive", func(t *testing.T) {
		require.Equal(t, http.StatusOK, a.doAuth("GET", "/v1/webhooks", "", "bearer "+token).status)
	})
	t.Run("Metrics", func(t *testing.T) {
		a.doAuth("GET", "/v1/webhooks", "", "Bearer "+token)
		req, err := http.Get(a.url + "/metrics")
		require.NoError(t, err)
		defer req.Body.Close()
		body, _ := io.ReadAll(req.Body)
		require.Equal(t, http.StatusOK, req.StatusCode)
		require.Contains(t, string(body),
			`notifier_http_requests_total{method="GET",route="/v1/webhooks",status="200"}`)
	})
	t.Run("HealthNeedsNoToken", func(t *testing.T) {
		require.Equal(t, http.StatusOK, a.doAuth("GET", "/healthz", "", "").status)
		r := a.doAuth("GET", "/readyz", "", "")
		require.Equal(t, http.StatusOK, r.status, r.raw)
		require.Equal(t, true, r.body["ready"])
	})
}

func TestCreateWebhook(t *testing.T) {
	a := newAPI(t)

	t.Run("OK", func(t *testing.T) {
		recv := testenv.NewReceiver(t)
		r := a.do("POST", "/v1/webhooks",
			`{"name":"Desk","url":"`+recv.URL()+`","events":["order.filled","signal.emitted"],`+
				`"secret":"top-secret-value","active":true}`)
		require.Equal(t, http.StatusCreated, r.status, r.raw)
		require.Regexp(t, `^wh_`, r.body["id"])
		require.Equal(t, true, r.body["has_secret"])
		require.Equal(t, "reachable", r.body["reachability"])
		require.NotContains(t, r.raw, "top-secret-value")
		ping := r.body["ping"].(map[string]any)
		require.Equal(t, true, ping["ok"])
		require.Equal(t, float64(200), ping["status_code"])

		got := recv.WaitFor(t, "", 1, 5*time.Second)[0]
		require.Equal(t, "ping", got.Header.Get("X-Barfinex-Event"))
		sig := got.Header.Get("X-Barfinex-Signature")
		require.True(t, notifier.VerifySignature("top-secret-value", got.Body, sig))
		require.NotContains(t, a.logs.String(), "top-secret-value")
	})

	t.Run("UnreachableIsSaved", func(t *testing.T) {
		closed := httptest.NewServer(http.NotFoundHandler())
		url := closed.URL + "/hook"
		closed.Close()
		body := a.mustCreate(url, `,"active":true`)
		require.Equal(t, "unreachable", body["reachability"])
		ping := body["ping"].(map[string]any)
		require.Equal(t, false, ping["ok"])
		require.NotEmpty(t, ping["error"])

		r := a.do("GET", "/v1/webhooks/"+body["id"].(string), "")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "unreachable", r.body["reachability"])
	})

	t.Run("ActiveDefaultsToTrue", func(t *testing.T) {
		body := a.mustCreate(testenv.NewReceiver(t).URL(), "")
		require.Equal(t, true, body["active"])
		require.Equal(t, false, body["has_secret"])
	})

	for _, tc := range []struct {
		name, body, code, field string
		status                  int
	}{
		{"ErrNameMissing", `{"url":"https://e.com/h","events":["order.filled"]}`, "invalid_argument", "name", 400},
		{"ErrURLMissing", `{"name":"x","events":["order.filled"]}`, "invalid_argument", "url", 400},
		{"ErrURLBad", `{"name":"x","url":"not a url","events":["order.filled"]}`, "invalid_argument", "url", 400},
		{"ErrURLScheme", `{"name":"x","url":"ftp://e.com/h","events":["order.filled"]}`, "invalid_argument", "url", 400},
		{"ErrEventsMissing", `{"name":"x","url":"https://e.com/h"}`, "invalid_argument", "events", 400},
		{"ErrEventUnknown", `{"name":"x","url":"https://e.com/h","events":["order.lost"]}`, "invalid_argument", "events", 400},
		{"ErrEventsType", `{"name":"x","url":"https://e.com/h","events":"order.filled"}`, "invalid_argument", "events", 400},
		{"ErrActiveType", `{"name":"x","url":"https://e.com/h","events":["order.filled"],"active":"yes"}`, "invalid_argument", "active", 400},
		{"ErrUnknownField", `{"name":"x","url":"https://e.com/h","events":["order.filled"],"colour":1}`, "invalid_argument", "colour", 400},
		{"ErrBadJSON", `{"name":"x",`, "invalid_argument", "body", 400},
		{"ErrTrailingData", `{"name":"x","url":"https://e.com/h","events":["order.filled"]} {}`, "invalid_argument", "body", 400},
		{"ErrNotObject", `[1]`, "invalid_argument", "body", 400},
		{"ErrEmpty", ``, "invalid_argument", "body", 400},
		{"ErrTooLarge", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, "payload_too_large", "", 413},
		{"ErrSecretNotUTF8", "{\"name\":\"x\",\"url\":\"https://e.com/h\",\"events\":[\"order.filled\"],\"secret\":\"s\xff\"}", "invalid_argument", "body", 400},
		{"ErrURLPort", `{"name":"x","url":"https://e.com:99999/h","events":["order.filled"]}`, "invalid_argument", "url", 400},
		{"ErrEventsElementType", `{"name":"x","url":"https://e.com/h","events":[1]}`, "invalid_argument", "events", 400},
		{"ErrFieldCase", `{"NAME":"x","url":"https://e.com/h","events":["order.filled"]}`, "invalid_argument", "NAME", 400},
		{"ErrDuplicateField", `{"name":"x","name":"y","url":"https://e.com/h","events":["order.filled"]}`, "invalid_argument", "name", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := a.store.Webhooks(context.Background(), 100, "")
			require.NoError(t, err)
			r := a.do("POST", "/v1/webhooks", tc.body)
			require.Equal(t, tc.status, r.status, r.raw)
			require.Equal(t, tc.code, r.errorCode())
			require.Equal(t, tc.field, r.errorField())
			after, err := a.store.Webhooks(context.Background(), 100, "")
			require.NoError(t, err)
			require.Len(t, after.Webhooks, len(before.Webhooks), "a refused request writes nothing")
		})
	}
}

func TestWebhookReadChangeDelete(t *testing.T) {
	a := newAPI(t)
	recv := testenv.NewReceiver(t)
	id := a.mustCreate(recv.URL(), `,"secret":"s1"`)["id"].(string)
	other := a.mustCreate(recv.URL(), "")["id"].(string)

	t.Run("Get", func(t *testing.T) {
		r := a.do("GET", "/v1/webhooks/"+id, "")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, id, r.body["id"])
		require.NotContains(t, r.raw, `"secret"`)
		require.NotContains(t, r.raw, "s1\"")
	})
	t.Run("List", func(t *testing.T) {
		r := a.do("GET", "/v1/webhooks?limit=1", "")
		require.Equal(t, http.StatusOK, r.status)
		require.Len(t, r.body["items"], 1)
		cursor := r.body["next_cursor"].(string)
		require.NotEmpty(t, cursor)
		r2 := a.do("GET", "/v1/webhooks?limit=1&cursor="+cursor, "")
		require.Equal(t, http.StatusOK, r2.status)
		ids := []any{r.body["items"].([]any)[0].(map[string]any)["id"], r2.body["items"].([]any)[0].(map[string]any)["id"]}
		require.ElementsMatch(t, []any{id, other}, ids)
		require.Equal(t, "", r2.body["next_cursor"])
	})
	t.Run("ErrListLimit", func(t *testing.T) {
		r := a.do("GET", "/v1/webhooks?limit=0", "")
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, "limit", r.errorField())
	})
	t.Run("ErrListCursor", func(t *testing.T) {
		require.Equal(t, http.StatusBadRequest, a.do("GET", "/v1/webhooks?cursor=%25%25", "").status)
		require.Equal(t, http.StatusBadRequest, a.do("GET", "/v1/webhooks?cursor=fA", "").status)
	})
	t.Run("Patch", func(t *testing.T) {
		r := a.do("PATCH", "/v1/webhooks/"+id, `{"name":"Renamed","active":false,"events":["service.down"],"secret":""}`)
		require.Equal(t, http.StatusOK, r.status, r.raw)
		require.Equal(t, "Renamed", r.body["name"])
		require.Equal(t, false, r.body["active"])
		require.Equal(t, false, r.body["has_secret"])
		require.Equal(t, []any{"service.down"}, r.body["events"])
		require.Equal(t, recv.URL(), r.body["url"])
	})
	for _, tc := range []struct{ name, body, field string }{
		{"ErrPatchEventsEmpty", `{"events":[]}`, "events"},
		{"ErrPatchURL", `{"url":"mailto:x@y"}`, "url"},
		{"ErrPatchName", `{"name":""}`, "name"},
		{"ErrPatchUnknownField", `{"id":"wh_x"}`, "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do("PATCH", "/v1/webhooks/"+other, tc.body)
			require.Equal(t, http.StatusBadRequest, r.status, r.raw)
			require.Equal(t, tc.field, r.errorField())
			got := a.do("GET", "/v1/webhooks/"+other, "")
			require.Equal(t, "desk", got.body["name"], "a refused change writes nothing")
		})
	}
	t.Run("Ping", func(t *testing.T) {
		n := len(recv.Requests())
		r := a.do("POST", "/v1/webhooks/"+other+"/ping", "")
		require.Equal(t, http.StatusOK, r.status, r.raw)
		require.Equal(t, true, r.body["ping"].(map[string]any)["ok"])
		require.Len(t, recv.Requests(), n+1)
	})
	t.Run("Delete", func(t *testing.T) {
		require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/webhooks/"+id, "").status)
		require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/webhooks/"+id, "").status)
		require.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/webhooks/"+id, "").status)
	})
	for _, path := range []string{"/v1/webhooks/wh_aaaaaaaaaaaaaaaaaaaaaaaaaa", "/v1/webhooks/not-an-id"} {
		t.Run("ErrNotFound"+path, func(t *testing.T) {
			for _, method := range []string{"GET", "PATCH", "DELETE"} {
				r := a.do(method, path, `{"name":"x"}`)
				require.Equal(t, http.StatusNotFound, r.status, method)
				require.Equal(t, "not_found", r.errorCode())
			}
			require.Equal(t, http.StatusNotFound, a.do("POST", path+"/ping", "").status)
		})
	}
}

func TestPublishEvent(t *testing.T) {
	a := newAPI(t)
	recv := testenv.NewReceiver(t)
	webhookID := a.mustCreate(recv.URL(), "")["id"].(string)

	t.Run("OK", func(t *testing.T) {
		r := a.do("POST", "/v1/events", `{"type":"order.filled","data":{"symbol":"BTCUSDT"},"timestamp":"2026-03-27T14:00:00+02:00"}`)
		require.Equal(t, http.StatusAccepted, r.status, r.raw)
		id := r.body["id"].(string)
		require.Regexp(t, `^evt_`, id)
		require.Equal(t, "2026-03-27T12:00:00.000Z", r.body["timestamp"])
		require.Equal(t, false, r.body["duplicate"])

		got := recv.WaitFor(t, id, 1, 10*time.Second)[0]
		require.JSONEq(t, `{"id":"`+id+`","type":"order.filled","timestamp":"2026-03-27T12:00:00.000Z","data":{"symbol":"BTCUSDT"}}`, string(got.Body))

		// The delivery's record shows the attempt.
		deliveryID := notifier.DeliveryID(id, webhookID)
		var d response
		require.Eventually(t, func() bool {
			d = a.do("GET", "/v1/deliveries/"+deliveryID, "")
			return d.status == http.StatusOK && d.body["status"] == "succeeded"
		}, 10*time.Second, 20*time.Millisecond)
		require.Equal(t, float64(1), d.body["attempts"])
		require.Equal(t, id, d.body["event"].(map[string]any)["id"])
	})

	t.Run("Duplicate", func(t *testing.T) {
		body := `{"id":"ord-1:filled","type":"order.filled","data":{"symbol":"ETHUSDT"}}`
		first := a.do("POST", "/v1/events", body)
		require.Equal(t, http.StatusAccepted, first.status, first.raw)
		second := a.do("POST", "/v1/events", body)
		require.Equal(t, http.StatusAccepted, second.status)
		require.Equal(t, true, second.body["duplicate"])
		require.Equal(t, first.body["timestamp"], second.body["timestamp"])
	})

	for _, tc := range []struct {
		name, body, code, field string
		status                  int
	}{
		{"ErrTypeMissing", `{"data":{}}`, "invalid_argument", "type", 400},
		{"ErrTypeUnknown", `{"type":"order.cancelled","data":{}}`, "invalid_argument", "type", 400},
		{"ErrTypePing", `{"type":"ping","data":{}}`, "invalid_argument", "type", 400},
		{"ErrDataArray", `{"type":"order.filled","data":[]}`, "invalid_argument", "data", 400},
		{"ErrTimestamp", `{"type":"order.filled","data":{"symbol":"X"},"timestamp":"yesterday"}`, "invalid_argument", "timestamp", 400},
		{"ErrTimestampYear", `{"type":"order.filled","data":{"symbol":"X"},"timestamp":"9999-12-31T23:59:59-01:00"}`, "invalid_argument", "timestamp", 400},
		{"ErrTimestampZero", `{"type":"order.filled","data":{"symbol":"X"},"timestamp":"0001-01-01T00:00:00Z"}`, "invalid_argument", "timestamp", 400},
		{"ErrID", `{"id":"has space","type":"order.filled","data":{}}`, "invalid_argument", "id", 400},
		{"ErrUnknownField", `{"type":"order.filled","data":{},"priority":1}`, "invalid_argument", "priority", 400},
		{"ErrBadJSON", `{"type":`, "invalid_argument", "body", 400},
		{"ErrDuplicateDataKey", `{"type":"order.filled","data":{"symbol":"A","symbol":"B"}}`, "invalid_argument", "data.symbol", 400},
		{"ErrTooDeep", `{"type":"order.filled","data":{"symbol":"A","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}`, "invalid_argument", "body", 400},
		{"ErrSchemaRequired", `{"type":"signal.emitted","data":{"symbol":"BTCUSDT","direction":"LONG"}}`, "invalid_argument", "data.strategy", 400},
		{"ErrSchemaType", `{"type":"signal.emitted","data":{"strategy":"m","symbol":"BTCUSDT","direction":"LONG","score":"high"}}`, "invalid_argument", "data.score", 400},
		{"ErrSchemaEnum", `{"type":"signal.emitted","data":{"strategy":"m","symbol":"BTCUSDT","direction":"UP"}}`, "invalid_argument", "data.direction", 400},
		{"ErrDataTooLarge", `{"type":"order.filled","data":{"x":"` + strings.Repeat("y", 2000) + `"}}`, "payload_too_large", "", 413},
		{"ErrBodyTooLarge", `{"type":"order.filled","data":{"x":"` + strings.Repeat("y", 10<<10) + `"}}`, "payload_too_large", "", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do("POST", "/v1/events", tc.body)
			require.Equal(t, tc.status, r.status, r.raw)
			require.Equal(t, tc.code, r.errorCode())
			require.Equal(t, tc.field, r.errorField())
		})
	}
}

func TestEventTypes(t *testing.T) {
	a := newAPI(t)
	r := a.do("GET", "/v1/event-types", "")
	require.Equal(t, http.StatusOK, r.status)
	items := r.body["items"].([]any)
	types := map[string]map[string]any{}
	for _, it := range items {
		m := it.(map[string]any)
		types[m["type"].(string)] = m
	}
	for _, want := range []string{"signal.emitted", "decision.made", "risk.blocked", "order.placed",
		"order.filled", "service.up", "service.down", "deployment.created", "deployment.updated",
		"deployment.deleted", "alert.triggered", "alert.resolved", "ping"} {
		require.Contains(t, types, want)
		require.NotEmpty(t, types[want]["description"])
		require.Equal(t, "object", types[want]["schema"].(map[string]any)["type"])
	}
}

func TestDelivery_ErrNotFound(t *testing.T) {
	a := newAPI(t)
	for _, id := range []string{"dlv_aaaaaaaaaaaaaaaaaaaaaaaaaa", "nope"} {
		r := a.do("GET", "/v1/deliveries/"+id, "")
		require.Equal(t, http.StatusNotFound, r.status)
		require.Equal(t, "not_found", r.errorCode())
	}
}

func TestUnknownRoute(t *testing.T) {
	a := newAPI(t)
	r := a.do("GET", "/v1/nothing-here", "")
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, "not_found", r.errorCode())
	r = a.do("PUT", "/v1/webhooks", "")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	for _, path := range []string{"/v1/webhooks/", "/v1/events/"} {
		r = a.do("POST", path, "{}")
		require.Equal(t, http.StatusNotFound, r.status, path)
		require.Equal(t, "not_found", r.errorCode(), "every answer is JSON")
	}
}

func TestCreateWebhook_RefusedTargets(t *testing.T) {
	a := newAPIWith(t, egress.Policy{}, devServer.Client())
	for _, url := range []string{
		"http://hooks.example.com/x", "https://127.0.0.1/x", "https://[::1%25lo]/x",
		"https://2130706433/x", "https://169.254.169.254/latest", "https://localhost/x",
		"https://10.0.0.5/x",
	} {
		r := a.do("POST", "/v1/webhooks", `{"name":"x","url":"`+url+`","events":["order.filled"]}`)
		require.Equal(t, http.StatusBadRequest, r.status, url)
		require.Equal(t, "url", r.errorField(), url)
	}
	page, err := a.store.Webhooks(context.Background(), 10, "")
	require.NoError(t, err)
	require.Empty(t, page.Webhooks)
}

func TestPublish_TemporalDown(t *testing.T) {
	dead, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	down := newAPIWith(t, egress.Policy{AllowPrivate: true}, dead)
	// A subscriber, so that the event has a delivery to start.
	require.NoError(t, down.store.CreateWebhook(context.Background(), &notifier.Webhook{
		Name: "w", URL: "http://127.0.0.1:9/hook", Active: true, Channel: notifier.Channel{Type: "generic"},
		Events: []notifier.EventType{notifier.EventOrderFilled},
	}))
	body := `{"id":"while-down-1","type":"order.filled","data":{"symbol":"BTCUSDT"}}`
	r := down.do("POST", "/v1/events", body)
	require.Equal(t, http.StatusServiceUnavailable, r.status, r.raw)
	require.Equal(t, "unavailable", r.errorCode())
	require.Equal(t, "while-down-1", r.body["error"].(map[string]any)["event_id"])
	require.NotContains(t, r.raw, "127.0.0.1:1", "no internals in the answer")
}

// An event published again once Temporal is back starts the deliveries that
// the first publish could not, and only those.
func TestPublish_AgainAfterTemporalDownDelivers(t *testing.T) {
	dead, err := client.NewLazyClient(client.Options{HostPort: "127.0.0.1:1"})
	require.NoError(t, err)
	down := newAPIWith(t, egress.Policy{AllowPrivate: true}, dead)
	r := testenv.NewReceiver(t)
	require.NoError(t, down.store.CreateWebhook(context.Background(), &notifier.Webhook{
		Name: "w", URL: r.URL(), Active: true, Channel: notifier.Channel{Type: "generic"},
		Events: []notifier.EventType{notifier.EventOrderFilled},
	}))
	body := `{"id":"while-down-2","type":"order.filled","data":{"symbol":"BTCUSDT"}}`
	require.Equal(t, http.StatusServiceUnavailable, down.do("POST", "/v1/events", body).status)

	up := newAPIOnStore(t, egress.Policy{AllowPrivate: true}, devServer.Client(), down.store)
	again := up.do("POST", "/v1/events", body)
	require.Equal(t, http.StatusAccepted, again.status, again.raw)
	require.Equal(t, true, again.body["duplicate"], "the id was stored by the first publish")
	require.Len(t, r.WaitFor(t, "while-down-2", 1, 10*time.Second), 1)
	third := up.do("POST", "/v1/events", body)
	require.Equal(t, true, third.body["duplicate"])
	require.Len(t, r.WaitFor(t, "while-down-2", 1, time.Second), 1, "delivered once")
}

// seedDeliveries publishes n events straight into the store, fanned out to
// one webhook, and gives the deliveries statuses in turn; it returns the
// delivery ids by status.
func seedDeliveries(t *testing.T, store *sqlstore.Store, webhookID string, n int) map[string][]string {
	t.Helper()
	ctx := context.Background()
	types := []notifier.EventType{notifier.EventOrderFilled, notifier.EventSignalEmitted}
	byStatus := map[string][]string{}
	for i := range n {
		typ := types[i%len(types)]
		ev, err := notifier.NewEvent("", typ, nil, []byte(`{"i":`+fmt.Sprint(i)+`}`), time.Now())
		require.NoError(t, err)
		body, err := ev.Envelope()
		require.NoError(t, err)
		_, _, err = store.CreateEvent(ctx, ev, body)
		require.NoError(t, err)
		targets, err := store.FanOut(ctx, ev.ID, "", 1000)
		require.NoError(t, err)
		require.Len(t, targets, 1)
		id := targets[0].DeliveryID
		status := notifier.DeliveryPending
		switch i % 3 {
		case 1:
			status = notifier.DeliveryFailed
			require.NoError(t, store.FinishDelivery(ctx, id, "r0", status, "receiver answered 500"))
		case 2:
			status = notifier.DeliverySucceeded
			require.NoError(t, store.RecordAttempt(ctx, &notifier.Attempt{
				DeliveryID: id, RunID: "r1", Number: 1, StartedAt: time.Now(), URL: "https://e.com", StatusCode: 200,
			}, sqlstore.AttemptOutcome{Status: status}))
		}
		byStatus[string(status)+"/"+string(typ)] = append(byStatus[string(status)+"/"+string(typ)], id)
		byStatus[string(status)] = append(byStatus[string(status)], id)
		byStatus[""] = append(byStatus[""], id)
	}
	return byStatus
}

// listAll pages through a webhook's deliveries with the given query and
// returns the ids in order, failing on any id seen twice.
func (a *api) listAll(webhookID, query string, limit int) []string {
	a.t.Helper()
	var ids []string
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(a.t, pages, 1000)
		r := a.do("GET", fmt.Sprintf("/v1/webhooks/%s/deliveries?limit=%d&cursor=%s&%s",
			webhookID, limit, cursor, query), "")
		require.Equal(a.t, http.StatusOK, r.status, r.raw)
		for _, it := range r.body["items"].([]any) {
			id := it.(map[string]any)["id"].(string)
			require.False(a.t, seen[id], "delivery %s listed twice", id)
			seen[id] = true
			ids = append(ids, id)
		}
		cursor = r.body["next_cursor"].(string)
		if cursor == "" {
			return ids
		}
	}
}

func TestListDeliveries(t *testing.T) {
	a := newAPI(t)
	recv := testenv.NewReceiver(t)
	r := a.do("POST", "/v1/webhooks", `{"name":"desk","url":"`+recv.URL()+`","events":["order.filled","signal.emitted"]}`)
	require.Equal(t, http.StatusCreated, r.status)
	webhookID := r.body["id"].(string)
	before := time.Now()
	byStatus := seedDeliveries(t, a.store, webhookID, 300)

	t.Run("AllPagesNothingSkipped", func(t *testing.T) {
		got := a.listAll(webhookID, "", 7)
		require.ElementsMatch(t, byStatus[""], got)
	})
	t.Run("NewestFirst", func(t *testing.T) {
		r := a.do("GET", "/v1/webhooks/"+webhookID+"/deliveries?limit=100", "")
		var last string
		for _, it := range r.body["items"].([]any) {
			created := it.(map[string]any)["created_at"].(string)
			if last != "" {
				require.LessOrEqual(t, created, last)
			}
			last = created
		}
	})
	t.Run("FilterStatus", func(t *testing.T) {
		for _, status := range []string{"pending", "failed", "succeeded"} {
			require.ElementsMatch(t, byStatus[status], a.listAll(webhookID, "status="+status, 13), status)
		}
		require.Empty(t, a.listAll(webhookID, "status=canceled", 13))
	})
	t.Run("FilterStatusAndType", func(t *testing.T) {
		got := a.listAll(webhookID, "status=failed&event_type=signal.emitted", 9)
		require.ElementsMatch(t, byStatus["failed/signal.emitted"], got)
	})
	t.Run("FilterTimeRange", func(t *testing.T) {
		from := before.Add(-time.Hour).UTC().Format(time.RFC3339)
		to := before.Add(time.Hour).UTC().Format(time.RFC3339)
		require.Len(t, a.listAll(webhookID, "from="+from+"&to="+to, 50), 300)
		require.Empty(t, a.listAll(webhookID, "to="+from, 50))
	})
	t.Run("Item", func(t *testing.T) {
		r := a.do("GET", "/v1/webhooks/"+webhookID+"/deliveries?status=succeeded&limit=1", "")
		it := r.body["items"].([]any)[0].(map[string]any)
		for _, k := range []string{"id", "event_id", "event_type", "status", "attempts", "created_at", "completed_at"} {
			require.Contains(t, it, k)
		}
		require.Equal(t, float64(1), it["attempts"])
		require.Equal(t, float64(200), it["last_status_code"])
		require.Nil(t, it["next_attempt_at"])
	})
	for _, tc := range []struct{ name, query, field string }{
		{"ErrStatus", "status=lost", "status"},
		{"ErrEventType", "event_type=nope", "event_type"},
		{"ErrFrom", "from=yesterday", "from"},
		{"ErrLimit", "limit=1000", "limit"},
		{"ErrCursor", "cursor=zz", "cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do("GET", "/v1/webhooks/"+webhookID+"/deliveries?"+tc.query, "")
			require.Equal(t, http.StatusBadRequest, r.status, r.raw)
			require.Equal(t, tc.field, r.errorField())
		})
	}
	t.Run("ErrWebhookNotFound", func(t *testing.T) {
		r := a.do("GET", "/v1/webhooks/wh_aaaaaaaaaaaaaaaaaaaaaaaaaa/deliveries", "")
		require.Equal(t, http.StatusNotFound, r.status)
	})
	t.Run("RetryPendingWithoutWorkflow", func(t *testing.T) {
		// Pending in the store with no workflow behind it: stranded, so it
		// may be started again.
		r := a.do("POST", "/v1/deliveries/"+byStatus["pending"][0]+"/retry", "")
		require.Equal(t, http.StatusAccepted, r.status, r.raw)
	})
	t.Run("RetryConflictSucceeded", func(t *testing.T) {
		r := a.do("POST", "/v1/deliveries/"+byStatus["succeeded"][0]+"/retry", "")
		require.Equal(t, http.StatusConflict, r.status, r.raw)
		d := a.do("GET", "/v1/deliveries/"+byStatus["succeeded"][0], "")
		require.Equal(t, "succeeded", d.body["status"])
	})
	t.Run("ErrRetryNotFound", func(t *testing.T) {
		for _, id := range []string{"dlv_aaaaaaaaaaaaaaaaaaaaaaaaaa", "x"} {
			require.Equal(t, http.StatusNotFound, a.do("POST", "/v1/deliveries/"+id+"/retry", "").status)
		}
	})
}

func TestWebhookChannel(t *testing.T) {
	a := newAPI(t)
	pd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	defer pd.Close()

	r := a.do("POST", "/v1/webhooks", `{"name":"pd","url":"`+pd.URL+`/v2/enqueue","events":["service.down"],`+
		`"channel":{"type":"pagerduty"}}`)
	require.Equal(t, http.StatusBadRequest, r.status, r.raw)
	require.Equal(t, "channel.routing_key", r.errorField())

	key := "R0UT1NGKEY0123456789abcdefghijkl"
	r = a.do("POST", "/v1/webhooks", `{"name":"pd","url":"`+pd.URL+`/v2/enqueue?routing_key=`+key+`",`+
		`"events":["service.down"],"channel":{"type":"pagerduty","severity":"critical"}}`)
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	require.NotContains(t, r.raw, key, "the routing key is never returned in full")
	ch := r.body["channel"].(map[string]any)
	require.Equal(t, "pagerduty", ch["type"])
	require.Equal(t, "critical", ch["severity"])
	require.Equal(t, true, r.body["ping"].(map[string]any)["ok"], "PagerDuty's 202 is success")

	r = a.do("POST", "/v1/webhooks", `{"name":"x","url":"https://hooks.example.com/x","events":["order.filled"],`+
		`"channel":{"type":"sms"}}`)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, "channel.type", r.errorField())

	r = a.do("POST", "/v1/webhooks", `{"name":"x","url":"`+pd.URL+`/generic","events":["order.filled"]}`)
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	require.Equal(t, "generic", r.body["channel"].(map[string]any)["type"], "auto picks generic for other hosts")
}
