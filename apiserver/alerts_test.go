package apiserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier"
)

// webhook creates an active webhook in the store and returns its id.
func (a *api) webhook(active bool) string {
	a.t.Helper()
	w := &notifier.Webhook{Name: "ops", URL: "http://127.0.0.1:9/hook", Active: active,
		Events: []notifier.EventType{notifier.EventOrderFilled}}
	require.NoError(a.t, a.store.CreateWebhook(context.Background(), w))
	return w.ID
}

func TestAlertRules_BadInputNamesTheField(t *testing.T) {
	a := newAPI(t)
	hook := a.webhook(true)
	require.NoError(t, a.store.CreateService(context.Background(),
		&notifier.Service{Name: "inspector", HealthURL: "http://127.0.0.1:9/health"}))
	// rule is a rule's body with the given fields and the webhook.
	rule := func(fields string) string {
		return fmt.Sprintf(`{"name":"x",%s,"webhook_ids":[%q]}`, fields, hook)
	}
	noSignals := `"type":"no_signals","strategy":"s"`
	drawdown := `"type":"drawdown_threshold"`
	serviceDown := `"type":"service_down","service":"inspector"`
	cases := []struct {
		body, field string
	}{
		{`{"name":"x",` + noSignals + `,"threshold":5}`, "webhook_ids"},
		{`{"name":"x",` + noSignals + `,"threshold":5,"webhook_ids":[]}`, "webhook_ids"},
		{`{"name":"x",` + noSignals + `,"threshold":5,` +
			`"webhook_ids":["wh_aaaaaaaaaaaaaaaaaaaaaaaaaa"]}`, "webhook_ids"},
		{`{"name":"x",` + noSignals + `,"threshold":5,"webhook_ids":["nope"]}`, "webhook_ids"},
		{rule(`"type":"no_signals","threshold":5`), "strategy"},
		{rule(noSignals + `,"threshold":0`), "threshold"},
		{rule(noSignals + `,"threshold":-3`), "threshold"},
		{rule(noSignals + `,"threshold":0.05`), "threshold"},
		{rule(noSignals + `,"threshold":1e309`), "threshold"},
		{rule(serviceDown + `,"threshold":0.5`), "threshold"},
		{rule(noSignals), "threshold"},
		{rule(drawdown + `,"threshold":101`), "threshold"},
		{rule(drawdown + `,"threshold":"5"`), "threshold"},
		{rule(drawdown + `,"threshold":5,"strategy":"s"`), "strategy"},
		{rule(drawdown + `,"threshold":5,"resolve_after_seconds":-1`), "resolve_after_seconds"},
		{rule(`"type":"service_down","threshold":30`), "service"},
		{rule(`"type":"service_down","service":"ghost","threshold":30`), "service"},
		{rule(serviceDown + `,"threshold":30,"resolve_after_seconds":5`), "resolve_after_seconds"},
		{rule(`"type":"sometimes","threshold":5`), "type"},
		{rule(`"threshold":5`), "type"},
		{fmt.Sprintf(`{"name":"",%s,"threshold":5,"webhook_ids":[%q]}`, drawdown, hook), "name"},
		{rule(drawdown + `,"threshold":5,"bogus":1`), "bogus"},
	}
	for _, c := range cases {
		r := a.do("POST", "/v1/alert-rules", c.body)
		require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", c.body, r.raw)
		require.Equal(t, c.field, r.errorField(), "%s: %s", c.body, r.raw)
	}
	page := a.do("GET", "/v1/alert-rules", "")
	require.Equal(t, http.StatusOK, page.status)
	require.Empty(t, page.body["items"], "no half-written rule")
}

func TestAlertRules_Lifecycle(t *testing.T) {
	a := newAPI(t)
	hook, idle := a.webhook(true), a.webhook(false)
	r := a.do("POST", "/v1/alert-rules", fmt.Sprintf(`{"name":"drawdown","type":"drawdown_threshold",
		"threshold":5,"webhook_ids":[%q,%q]}`, hook, hook))
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	id := r.body["id"].(string)
	require.Equal(t, []any{hook}, r.body["webhook_ids"], "webhook ids are deduplicated")
	require.Equal(t, "percent", r.body["unit"])
	require.Equal(t, 60.0, r.body["resolve_after_seconds"], "the default hold")
	require.Equal(t, "ok", r.body["state"].(map[string]any)["status"])

	require.Eventually(t, func() bool {
		g := a.do("GET", "/v1/alert-rules/"+id, "")
		return g.body["state"].(map[string]any)["live"] == true
	}, 30*time.Second, 50*time.Millisecond, "the rule's workflow answers")

	// A change goes through the workflow's update: checked, then applied.
	bad := a.do("PATCH", "/v1/alert-rules/"+id, `{"threshold":0}`)
	require.Equal(t, http.StatusBadRequest, bad.status, bad.raw)
	require.Equal(t, "threshold", bad.errorField())
	bad = a.do("PATCH", "/v1/alert-rules/"+id, `{"type":"no_signals"}`)
	require.Equal(t, "type", bad.errorField(), bad.raw)
	bad = a.do("PATCH", "/v1/alert-rules/"+id, `{"webhook_ids":[]}`)
	require.Equal(t, "webhook_ids", bad.errorField(), bad.raw)

	// Moved to an inactive webhook only, the rule says its alerts go nowhere.
	p := a.do("PATCH", "/v1/alert-rules/"+id, fmt.Sprintf(`{"threshold":7.5,"webhook_ids":[%q]}`, idle))
	require.Equal(t, http.StatusOK, p.status, p.raw)
	require.Equal(t, 7.5, p.body["threshold"])
	require.Equal(t, 0.0, p.body["active_webhooks"])
	require.Contains(t, p.body["warnings"], "all of the rule's webhooks are inactive: its alerts go nowhere")
	require.Equal(t, true, p.body["state"].(map[string]any)["live"])
	g := a.do("GET", "/v1/alert-rules/"+id, "")
	require.Equal(t, 7.5, g.body["threshold"], "the store holds the change")

	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/alert-rules/"+id, "").status)
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/alert-rules/"+id, "").status)
	require.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/alert-rules/"+id, "").status)
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/alert-rules/rule_x", "").status)
}

func TestServices_BadInputNamesTheField(t *testing.T) {
	a := newAPI(t)
	inspector := `{"name":"inspector","health_url":"http://127.0.0.1:9/health"`
	cases := []struct{ body, field string }{
		{`{"health_url":"http://127.0.0.1:9/health"}`, "name"},
		{`{"name":"Inspector","health_url":"http://127.0.0.1:9/health"}`, "name"},
		{`{"name":"inspector"}`, "health_url"},
		{`{"name":"inspector","health_url":"ftp://x/health"}`, "health_url"},
		{`{"name":"inspector","health_url":"/health"}`, "health_url"},
		{`{"name":"inspector","health_url":"http://u:p@127.0.0.1/health"}`, "health_url"},
		{`{"name":"inspector","health_url":"http://127.0.0.1:99999/health"}`, "health_url"},
		{inspector + `,"check_interval_seconds":0}`, "check_interval_seconds"},
		{inspector + `,"check_interval_seconds":1.5}`, "check_interval_seconds"},
		{inspector + `,"check_interval_seconds":100000}`, "check_interval_seconds"},
	}
	for _, c := range cases {
		r := a.do("POST", "/v1/services", c.body)
		require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", c.body, r.raw)
		require.Equal(t, c.field, r.errorField(), "%s: %s", c.body, r.raw)
	}

	ok := a.do("POST", "/v1/services",
		`{"name":"inspector","health_url":"http://127.0.0.1:9/health?api_key=s3cr3t"}`)
	require.Equal(t, http.StatusCreated, ok.status, ok.raw)
	require.Equal(t, 10.0, ok.body["check_interval_seconds"])
	require.Equal(t, "http://127.0.0.1:9/health?api_key=***", ok.body["health_url"],
		"a token in the query is masked")
	dup := a.do("POST", "/v1/services", `{"name":"inspector","health_url":"http://127.0.0.1:9/other"}`)
	require.Equal(t, http.StatusConflict, dup.status, dup.raw)
	// Nothing listens there: the monitor finds it down.
	require.Eventually(t, func() bool {
		return a.do("GET", "/v1/services/inspector", "").body["status"] == "down"
	}, 30*time.Second, 50*time.Millisecond)
	list := a.do("GET", "/v1/services", "")
	require.Len(t, list.body["items"], 1)
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/services/ghost", "").status)
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/services/inspector", "").status)
	require.Equal(t, http.StatusNotFound, a.do("DELETE", "/v1/services/inspector", "").status)
}

func TestPortfolio_SnapshotsAndDrawdown(t *testing.T) {
	a := newAPI(t)
	require.Equal(t, http.StatusNotFound, a.do("GET", "/v1/portfolio", "").status)
	for body, field := range map[string]string{
		`{}`:                                     "equity",
		`{"equity":-1}`:                          "equity",
		`{"equity":"100"}`:                       "equity",
		`{"equity":null}`:                        "equity",
		`{"equity":1e400}`:                       "equity",
		`{"equity":100,"timestamp":"yesterday"}`: "timestamp",
		`{"equity":100,"timestamp":"9999-01-01T00:00:00Z"}`: "timestamp",
	} {
		r := a.do("POST", "/v1/portfolio/snapshots", body)
		require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", body, r.raw)
		require.Equal(t, field, r.errorField(), "%s: %s", body, r.raw)
	}
	for _, e := range []string{"1000", "1200", "900"} {
		r := a.do("POST", "/v1/portfolio/snapshots", `{"equity":`+e+`}`)
		require.Equal(t, http.StatusCreated, r.status, r.raw)
	}
	// An older snapshot raises nothing but the peak would; it does not
	// replace the current equity.
	r := a.do("POST", "/v1/portfolio/snapshots", `{"equity":800,"timestamp":"2020-01-01T00:00:00Z"}`)
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	p := a.do("GET", "/v1/portfolio", "")
	require.Equal(t, 900.0, p.body["equity"])
	require.Equal(t, 1200.0, p.body["peak"])
	require.Equal(t, 25.0, p.body["drawdown_percent"])
}

func TestAlertRules_ChangesThatMustAlwaysWork(t *testing.T) {
	a := newAPI(t)
	hook := a.webhook(true)
	r := a.do("POST", "/v1/alert-rules", fmt.Sprintf(`{"name":"dd","type":"drawdown_threshold",
		"threshold":5,"resolve_after_seconds":0,"webhook_ids":[%q]}`, hook))
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	id := r.body["id"].(string)
	require.Equal(t, 0.0, r.body["resolve_after_seconds"], "zero is resolve at once, not the default")
	p := a.do("PATCH", "/v1/alert-rules/"+id, `{"name":"renamed"}`)
	require.Equal(t, http.StatusOK, p.status, p.raw)
	require.Equal(t, 0.0, p.body["resolve_after_seconds"], "a change of another field keeps it")

	// The rule's only webhook is deleted: the rule can still be changed.
	require.NoError(t, a.store.DeleteWebhook(context.Background(), hook))
	p = a.do("PATCH", "/v1/alert-rules/"+id, `{"active":false}`)
	require.Equal(t, http.StatusOK, p.status, p.raw)
	require.Contains(t, p.body["warnings"], "the rule has no webhooks left: its alerts go nowhere")
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/alert-rules/"+id, "").status)
}

func TestAlertRules_DeleteWithoutItsWorkflowResolvesFirst(t *testing.T) {
	a := newAPI(t)
	hook := a.webhook(true)
	r := a.do("POST", "/v1/alert-rules", fmt.Sprintf(`{"name":"dd","type":"drawdown_threshold",
		"threshold":5,"webhook_ids":[%q]}`, hook))
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	id := r.body["id"].(string)
	for _, e := range []string{"1000", "900"} {
		s := a.do("POST", "/v1/portfolio/snapshots", `{"equity":`+e+`}`)
		require.Equal(t, http.StatusCreated, s.status, s.raw)
	}
	require.Eventually(t, func() bool {
		st := a.do("GET", "/v1/alert-rules/"+id, "").body["state"].(map[string]any)
		return st["status"] == "firing" && st["live"] == true
	}, 30*time.Second, 50*time.Millisecond)

	// Someone terminates the rule's workflow in the Web UI; the rule is
	// then deleted.
	require.NoError(t, devServer.Client().TerminateWorkflow(context.Background(),
		"alert_"+id, "", "by hand"))
	require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/alert-rules/"+id, "").status)

	ctx := context.Background()
	trig, err := a.store.Event(ctx, notifier.AlertEventID(id, 1, notifier.EventAlertTriggered))
	require.NoError(t, err)
	res, err := a.store.Event(ctx, notifier.AlertEventID(id, 1, notifier.EventAlertResolved))
	require.NoError(t, err, "the firing alert is resolved before the rule goes")
	since := func(body []byte) any {
		env, err := notifier.ParseEnvelope(body)
		require.NoError(t, err)
		var d map[string]any
		require.NoError(t, json.Unmarshal(env.Data, &d))
		return d["since"]
	}
	require.Equal(t, since(trig.Body), since(res.Body), "the resolution names its trigger's episode")
	_, err = a.store.Event(ctx, notifier.AlertEventID(id, 2, notifier.EventAlertTriggered))
	require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(err), "nothing fired again")
}

func TestServices_RegisteredAgainIsMonitored(t *testing.T) {
	a := newAPI(t)
	for i := 0; i < 2; i++ {
		r := a.do("POST", "/v1/services",
			`{"name":"advisor","health_url":"http://127.0.0.1:9/h","check_interval_seconds":1}`)
		require.Equal(t, http.StatusCreated, r.status, r.raw)
		require.Eventually(t, func() bool {
			return a.do("GET", "/v1/services/advisor", "").body["status"] == "down"
		}, 30*time.Second, 50*time.Millisecond, "round %d: the service is probed", i)
		require.Equal(t, http.StatusNoContent, a.do("DELETE", "/v1/services/advisor", "").status)
	}
}

func TestEvents_NotifierIDsAreReserved(t *testing.T) {
	a := newAPI(t)
	for _, id := range []string{"alert:rule_x:1:triggered", "service:inspector:down:1"} {
		r := a.do("POST", "/v1/events", fmt.Sprintf(`{"id":%q,"type":"order.filled","data":{"symbol":"X"}}`, id))
		require.Equal(t, http.StatusBadRequest, r.status, r.raw)
		require.Equal(t, "id", r.errorField())
	}
}
