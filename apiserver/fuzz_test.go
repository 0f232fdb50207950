package apiserver_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/apiserver"
	"github.com/barfinex/notifier/egress"
	"github.com/barfinex/notifier/internal/testenv"
	"github.com/barfinex/notifier/sqlstore"
)

// fuzzHandler serves the API with no worker on its task queue: workflows it
// starts never run, so no input can make it connect anywhere, and a test
// ping gives up at once.
func fuzzHandler(t testing.TB) http.Handler {
	store, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "fuzz.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	srv, err := apiserver.New(store, devServer.Client(), apiserver.Config{
		Token:       token,
		Egress:      egress.Policy{},
		TaskQueue:   "fuzz-no-worker",
		PingTimeout: time.Millisecond,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	return srv.Handler()
}

// checkAnswer fails unless the answer is a success or a well-formed 4xx.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, body string) {
	if rec.Code >= 500 {
		t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil && rec.Code != http.StatusNoContent {
		t.Fatalf("answer is not JSON for %q: %s", body, rec.Body)
	}
	if rec.Code >= 400 {
		e, ok := out["error"].(map[string]any)
		if !ok || e["code"] == "" || e["message"] == "" {
			t.Fatalf("error answer without code and message for %q: %s", body, rec.Body)
		}
	}
}

func serve(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func FuzzPublishEvent(f *testing.F) {
	for _, seed := range []string{
		`{"type":"signal.emitted","data":{"strategy":"s","symbol":"BTCUSDT","direction":"LONG","score":0.8}}`,
		`{"id":"evt-1","type":"order.filled","data":{"symbol":"X"},"timestamp":"2026-03-27T12:00:00.000Z"}`,
		`{"type":"order.filled","data":[]}`, `{"type":"ping","data":{}}`, `{"type":1}`, `{`, ``, `null`,
		`{"type":"order.filled","data":{"symbol":"X"},"timestamp":"9999-12-31T23:59:59-01:00"}`,
		"{\"type\":\"order.filled\",\"data\":{\"symbol\":\"\xff\"}}", `{"id":"a/b","type":"x"}`,
	} {
		f.Add(seed)
	}
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, body string) {
		checkAnswer(t, serve(h, "POST", "/v1/events", body), body)
	})
}

func FuzzCreateWebhook(f *testing.F) {
	for _, seed := range []string{
		`{"name":"desk","url":"https://hooks.example.com/x","events":["order.filled"],"secret":"s","active":true}`,
		`{"name":"desk","url":"https://127.0.0.1/x","events":["order.filled"]}`,
		`{"name":"desk","url":"https://[::1%25lo]/x","events":["order.filled"]}`,
		`{"name":"","url":"","events":[]}`, `{"events":"x"}`, `{"name":1}`, `[]`, `{"a":1}`,
		`{"name":"d","url":"https://e.com:99999/","events":["order.filled"]}`,
	} {
		f.Add(seed)
	}
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, body string) {
		rec := serve(h, "POST", "/v1/webhooks", body)
		checkAnswer(t, rec, body)
		if rec.Code == http.StatusCreated {
			var w map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &w))
			id, _ := w["id"].(string)
			require.True(t, notifier.ValidWebhookID(id))
			checkAnswer(t, serve(h, "PATCH", "/v1/webhooks/"+id, body), body)
		}
	})
}

func TestHandlerPanicIsA500WithoutInternals(t *testing.T) {
	var logs testenv.SyncBuffer
	srv, err := apiserver.New(nil, devServer.Client(), apiserver.Config{Token: token},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	require.NoError(t, err)
	rec := serve(srv.Handler(), "GET", "/v1/webhooks/wh_aaaaaaaaaaaaaaaaaaaaaaaaaa", "")
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.JSONEq(t, `{"error":{"code":"internal","message":"internal error"}}`, rec.Body.String())
	require.Contains(t, logs.String(), "panic in handler")
}
