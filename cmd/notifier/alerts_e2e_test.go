package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/internal/testenv"
	"github.com/barfinex/notifier/workflows"
)

type ruleOut struct {
	ID    string `json:"id"`
	State struct {
		Status       string  `json:"status"`
		Since        string  `json:"since"`
		CurrentValue float64 `json:"current_value"`
		Episode      int     `json:"episode"`
		Live         bool    `json:"live"`
	} `json:"state"`
	LastAlerts []struct {
		EventID string `json:"event_id"`
		Type    string `json:"type"`
	} `json:"last_alerts"`
	ActiveWebhooks int      `json:"active_webhooks"`
	Warnings       []string `json:"warnings"`
}

func (s *stack) createRule(body map[string]any) ruleOut {
	s.t.Helper()
	var out ruleOut
	require.Equal(s.t, http.StatusCreated, s.call("POST", "/v1/alert-rules", body, &out))
	return out
}

func (s *stack) rule(id string) ruleOut {
	s.t.Helper()
	var out ruleOut
	require.Equal(s.t, http.StatusOK, s.call("GET", "/v1/alert-rules/"+id, nil, &out))
	return out
}

// waitLiveRule waits until a rule's workflow answers for it.
func (s *stack) waitLiveRule(id string) {
	s.t.Helper()
	require.Eventually(s.t, func() bool { return s.rule(id).State.Live }, 30*time.Second,
		50*time.Millisecond, "rule %s never answered", id)
}

// ofType returns the requests a receiver got for events of one type.
func ofType(r *testenv.Receiver, typ notifier.EventType) []testenv.Request {
	var got []testenv.Request
	for _, req := range r.Requests() {
		if req.Header.Get("X-Barfinex-Event") == string(typ) {
			got = append(got, req)
		}
	}
	return got
}

func waitType(t *testing.T, r *testenv.Receiver, typ notifier.EventType, n int) []testenv.Request {
	t.Helper()
	require.Eventually(t, func() bool { return len(ofType(r, typ)) >= n }, 60*time.Second,
		50*time.Millisecond, "receiver never got %d %s", n, typ)
	return ofType(r, typ)
}

func alertOf(t *testing.T, req testenv.Request) map[string]any {
	t.Helper()
	var env struct {
		ID   string         `json:"id"`
		Data map[string]any `json:"data"`
	}
	require.NoError(t, json.Unmarshal(req.Body, &env))
	require.Equal(t, req.Header.Get("X-Barfinex-Event-Id"), env.ID)
	return env.Data
}

func TestEndToEnd_NoSignalsAlert(t *testing.T) {
	s := startStack(t, nil)
	r := testenv.NewReceiver(t)
	// The webhook subscribes to orders only: the rule's choice of webhooks
	// is what sends it alerts.
	hook := s.createWebhook(r.URL(), "alert-secret", true, notifier.EventOrderFilled)
	// 0.1 minutes: six seconds of silence.
	rule := s.createRule(map[string]any{"name": "momentum alive", "type": "no_signals",
		"strategy": "momentum", "threshold": 0.1, "webhook_ids": []string{hook}})
	require.Equal(t, "ok", rule.State.Status)
	s.waitLiveRule(rule.ID)

	signal := map[string]any{"type": "signal.emitted", "data": map[string]any{
		"strategy": "momentum", "symbol": "BTCUSDT", "direction": "LONG"}}
	s.publish(signal)
	signalled := time.Now()

	got := r.WaitFor(t, notifier.AlertEventID(rule.ID, 1, notifier.EventAlertTriggered), 1, time.Minute)
	silence := got[0].At.Sub(signalled)
	t.Logf("alert.triggered arrived %s after the last signal (threshold 6s)", silence)
	require.GreaterOrEqual(t, silence, 6*time.Second, "fired before the threshold")
	require.True(t, notifier.VerifySignature("alert-secret", got[0].Body,
		got[0].Header.Get(notifier.SignatureHeader)), "alerts are signed")
	data := alertOf(t, got[0])
	require.Equal(t, "no_signals", data["rule"])
	require.Equal(t, rule.ID, data["rule_id"])
	require.Equal(t, "momentum alive", data["rule_name"])
	require.Equal(t, "momentum", data["strategy"])
	require.Equal(t, 0.1, data["threshold"])
	require.Contains(t, data["message"], "Strategy momentum has emitted no signal for")

	firing := s.rule(rule.ID)
	require.Equal(t, "firing", firing.State.Status)
	require.Equal(t, 1, firing.State.Episode)
	require.GreaterOrEqual(t, firing.State.CurrentValue, 0.1, "minutes of silence so far")

	// The process restarts while the alert fires: the rule's state is the
	// workflow's, and nothing is sent again.
	s.stop()
	s.start()
	require.Eventually(t, func() bool {
		st := s.rule(rule.ID).State
		return st.Live && st.Status == "firing" && st.Episode == 1
	}, 30*time.Second, 50*time.Millisecond)
	require.Len(t, ofType(r, notifier.EventAlertTriggered), 1)

	// The strategy speaks again: the alert resolves.
	s.publish(signal)
	r.WaitFor(t, notifier.AlertEventID(rule.ID, 1, notifier.EventAlertResolved), 1, 30*time.Second)
	require.Len(t, ofType(r, notifier.EventAlertTriggered), 1, "exactly one alert.triggered")
	require.Len(t, ofType(r, notifier.EventAlertResolved), 1)
	require.Equal(t, "ok", s.rule(rule.ID).State.Status)

	require.Equal(t, http.StatusNoContent, s.call("DELETE", "/v1/alert-rules/"+rule.ID, nil, nil))
	require.Equal(t, http.StatusNotFound, s.call("GET", "/v1/alert-rules/"+rule.ID, nil, nil))
	require.NoError(t, waitWorkflow(t, workflows.RuleWorkflowID(rule.ID)))
	captureHistory(t, "alert-no-signals", workflows.RuleWorkflowID(rule.ID))
}

func TestEndToEnd_DrawdownAlert(t *testing.T) {
	s := startStack(t, nil)
	r := testenv.NewReceiver(t)
	hook := s.createWebhook(r.URL(), "", true, notifier.EventOrderFilled)
	rule := s.createRule(map[string]any{"name": "drawdown", "type": "drawdown_threshold",
		"threshold": 5, "resolve_after_seconds": 1, "webhook_ids": []string{hook}})
	s.waitLiveRule(rule.ID)

	snapshot := func(equity float64) {
		require.Equal(t, http.StatusCreated, s.call("POST", "/v1/portfolio/snapshots",
			map[string]any{"equity": equity}, nil))
	}
	snapshot(10000)
	snapshot(9800)
	snapshot(9470)
	got := r.WaitFor(t, notifier.AlertEventID(rule.ID, 1, notifier.EventAlertTriggered), 1, 30*time.Second)
	data := alertOf(t, got[0])
	require.Equal(t, "Portfolio drawdown exceeded 5.0% (current: 5.3%)", data["message"])
	require.Equal(t, 5.3, data["current_value"])

	var p struct {
		Equity          float64 `json:"equity"`
		Peak            float64 `json:"peak"`
		DrawdownPercent float64 `json:"drawdown_percent"`
	}
	require.Equal(t, http.StatusOK, s.call("GET", "/v1/portfolio", nil, &p))
	require.Equal(t, 9470.0, p.Equity)
	require.Equal(t, 10000.0, p.Peak)
	require.InDelta(t, 5.3, p.DrawdownPercent, 1e-9)

	snapshot(9600) // 4 %: resolves after a second below the threshold
	r.WaitFor(t, notifier.AlertEventID(rule.ID, 1, notifier.EventAlertResolved), 1, 30*time.Second)
	require.Len(t, ofType(r, notifier.EventAlertTriggered), 1)
	require.Len(t, ofType(r, notifier.EventAlertResolved), 1)

	require.Equal(t, http.StatusNoContent, s.call("DELETE", "/v1/alert-rules/"+rule.ID, nil, nil))
	require.NoError(t, waitWorkflow(t, workflows.RuleWorkflowID(rule.ID)))
	captureHistory(t, "alert-drawdown", workflows.RuleWorkflowID(rule.ID))
}

func TestEndToEnd_ServiceDownAlert(t *testing.T) {
	s := startStack(t, nil)
	health := testenv.NewReceiver(t, http.StatusOK)
	r := testenv.NewReceiver(t)
	hook := s.createWebhook(r.URL(), "", true, notifier.EventServiceDown, notifier.EventServiceUp)

	var svc struct {
		Status string `json:"status"`
	}
	require.Equal(t, http.StatusCreated, s.call("POST", "/v1/services", map[string]any{
		"name": "inspector", "health_url": health.Server.URL + "/health", "check_interval_seconds": 1,
	}, &svc))
	require.Equal(t, "unknown", svc.Status)
	require.Eventually(t, func() bool {
		s.call("GET", "/v1/services/inspector", nil, &svc)
		return svc.Status == "up"
	}, 30*time.Second, 50*time.Millisecond)

	rule := s.createRule(map[string]any{"name": "inspector down", "type": "service_down",
		"service": "inspector", "threshold": 3, "webhook_ids": []string{hook}})
	s.waitLiveRule(rule.ID)

	health.Answer(http.StatusServiceUnavailable)
	down := waitType(t, r, notifier.EventServiceDown, 1)
	triggered := r.WaitFor(t, notifier.AlertEventID(rule.ID, 1, notifier.EventAlertTriggered), 1, 30*time.Second)
	gap := triggered[0].At.Sub(down[0].At)
	t.Logf("alert.triggered came %s after service.down (threshold 3s, checks every 1s)", gap)
	require.Greater(t, gap, 2*time.Second, "fired before the threshold")
	data := alertOf(t, triggered[0])
	require.Equal(t, "inspector", data["service"])
	require.Contains(t, data["message"], "Service inspector has been unreachable for")
	require.Equal(t, "inspector", alertOf(t, down[0])["service"])

	health.Answer(http.StatusOK)
	waitType(t, r, notifier.EventServiceUp, 1)
	r.WaitFor(t, notifier.AlertEventID(rule.ID, 1, notifier.EventAlertResolved), 1, 30*time.Second)
	require.Len(t, ofType(r, notifier.EventServiceDown), 1)
	require.Len(t, ofType(r, notifier.EventAlertTriggered), 1)
	require.Len(t, ofType(r, notifier.EventAlertResolved), 1)

	// A watched service cannot be deleted; once its rule is gone, it can.
	require.Equal(t, http.StatusConflict, s.call("DELETE", "/v1/services/inspector", nil, nil))
	require.Equal(t, http.StatusNoContent, s.call("DELETE", "/v1/alert-rules/"+rule.ID, nil, nil))
	require.Equal(t, http.StatusNoContent, s.call("DELETE", "/v1/services/inspector", nil, nil))
	var canceled *temporal.CanceledError
	require.ErrorAs(t, waitWorkflow(t, workflows.MonitorWorkflowID("inspector")), &canceled,
		"the monitor ends with its service")
	captureHistory(t, "alert-service-down", workflows.RuleWorkflowID(rule.ID))
	captureHistory(t, "service-monitor", workflows.MonitorWorkflowID("inspector"))
}
