package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.temporal.io/sdk/client"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/channel"
	"github.com/barfinex/notifier/workflows"
)

// webhookRequest is the body of a webhook create or change. Pointers tell a
// field left out from one set to its zero value.
type webhookRequest struct {
	Name    *string              `json:"name"`
	URL     *string              `json:"url"`
	Events  []notifier.EventType `json:"events"`
	Secret  *string              `json:"secret"`
	Active  *bool                `json:"active"`
	Channel *notifier.Channel    `json:"channel"`
}

type webhookJSON struct {
	ID           string               `json:"id"`
	Name         string               `json:"name"`
	URL          string               `json:"url"`
	Events       []notifier.EventType `json:"events"`
	Active       bool                 `json:"active"`
	Channel      notifier.Channel     `json:"channel"`
	HasSecret    bool                 `json:"has_secret"`
	Reachability string               `json:"reachability"`
	LastPing     *pingJSON            `json:"last_ping"`
	CreatedAt    string               `json:"created_at"`
	UpdatedAt    string               `json:"updated_at"`
	// Ping is the test ping this request ran, if it ran one.
	Ping *pingJSON `json:"ping,omitempty"`
}

type pingJSON struct {
	OK         bool    `json:"ok"`
	StatusCode int     `json:"status_code,omitempty"`
	Error      string  `json:"error,omitempty"`
	DurationMS int64   `json:"duration_ms"`
	At         *string `json:"at,omitempty"`
}

func timeJSON(t time.Time) string { return t.UTC().Format(notifier.TimestampLayout) }

func toWebhookJSON(w *notifier.Webhook) *webhookJSON {
	// Channel URLs and settings carry credentials: reads show them masked.
	out := &webhookJSON{
		ID: w.ID, Name: w.Name, URL: channel.MaskURL(w.Channel, w.URL), Events: w.Events,
		Active: w.Active, Channel: channel.Masked(w.Channel),
		HasSecret: w.Secret != "", Reachability: string(w.Reachability()),
		CreatedAt: timeJSON(w.CreatedAt), UpdatedAt: timeJSON(w.UpdatedAt),
	}
	if p := w.LastPing; p != nil {
		at := timeJSON(p.At)
		out.LastPing = &pingJSON{OK: p.OK, StatusCode: p.StatusCode, Error: p.Error,
			DurationMS: p.Duration.Milliseconds(), At: &at}
	}
	return out
}

func (s *Server) createWebhook(c *gin.Context) {
	var req webhookRequest
	if err := decode(c, &req, maxConfigBody); err != nil {
		writeError(c, err)
		return
	}
	w := &notifier.Webhook{Events: req.Events, Active: true}
	switch {
	case req.Name == nil:
		writeError(c, notifier.Invalid("name", "is required"))
		return
	case req.URL == nil:
		writeError(c, notifier.Invalid("url", "is required"))
		return
	}
	w.Name, w.URL = *req.Name, *req.URL
	if req.Secret != nil {
		w.Secret = *req.Secret
	}
	if req.Active != nil {
		w.Active = *req.Active
	}
	if err := w.Validate(s.cfg.URLPolicy); err != nil {
		writeError(c, err)
		return
	}
	if err := s.cfg.Egress.CheckURL(w.URL); err != nil {
		writeError(c, notifier.Invalid("url", "%v", err))
		return
	}
	var requested notifier.Channel
	if req.Channel != nil {
		requested = *req.Channel
	}
	ch, err := channel.Resolve(requested, w.URL)
	if err != nil {
		writeError(c, err)
		return
	}
	w.Channel = ch
	if err := s.store.CreateWebhook(c.Request.Context(), w); err != nil {
		s.fail(c, "create webhook", err)
		return
	}
	s.log.Info("webhook created", "webhook_id", w.ID)

	ping := s.ping(c.Request.Context(), w.ID)
	// The ping stored its result on the webhook; read it back as it now is.
	if stored, err := s.store.Webhook(c.Request.Context(), w.ID); err == nil {
		w = stored
	}
	out := toWebhookJSON(w)
	out.Ping = ping
	c.JSON(http.StatusCreated, out)
}

func (s *Server) listWebhooks(c *gin.Context) {
	limit, err := limitParam(c)
	if err != nil {
		writeError(c, err)
		return
	}
	page, err := s.store.Webhooks(c.Request.Context(), limit, c.Query("cursor"))
	if err != nil {
		s.fail(c, "list webhooks", err)
		return
	}
	items := make([]*webhookJSON, len(page.Webhooks))
	for i, w := range page.Webhooks {
		items[i] = toWebhookJSON(w)
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": page.NextCursor})
}

func limitParam(c *gin.Context) (int, error) {
	raw := c.Query("limit")
	if raw == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > 100 {
		return 0, notifier.Invalid("limit", "must be a whole number from 1 to 100")
	}
	return n, nil
}

// webhookID reads and checks the :id path parameter.
func webhookID(c *gin.Context) (string, bool) {
	id := c.Param("id")
	if !notifier.ValidWebhookID(id) {
		writeError(c, notifier.Errorf(notifier.ENOTFOUND, "webhook %q not found", id))
		return "", false
	}
	return id, true
}

func (s *Server) getWebhook(c *gin.Context) {
	id, ok := webhookID(c)
	if !ok {
		return
	}
	w, err := s.store.Webhook(c.Request.Context(), id)
	if err != nil {
		s.fail(c, "get webhook", err)
		return
	}
	c.JSON(http.StatusOK, toWebhookJSON(w))
}

func (s *Server) updateWebhook(c *gin.Context) {
	id, ok := webhookID(c)
	if !ok {
		return
	}
	var req webhookRequest
	if err := decode(c, &req, maxConfigBody); err != nil {
		writeError(c, err)
		return
	}
	upd := &notifier.WebhookUpdate{
		Name: req.Name, URL: req.URL, Events: req.Events, Secret: req.Secret, Active: req.Active,
	}
	if req.Events != nil && len(req.Events) == 0 {
		writeError(c, notifier.Invalid("events", "must list at least one event type"))
		return
	}
	if err := upd.Validate(s.cfg.URLPolicy); err != nil {
		writeError(c, err)
		return
	}
	if upd.URL != nil {
		if err := s.cfg.Egress.CheckURL(*upd.URL); err != nil {
			writeError(c, notifier.Invalid("url", "%v", err))
			return
		}
	}
	if req.URL != nil || req.Channel != nil {
		// The channel follows from both: resolve it again against what the
		// webhook will be.
		current, err := s.store.Webhook(c.Request.Context(), id)
		if err != nil {
			s.fail(c, "update webhook", err)
			return
		}
		url, ch := current.URL, current.Channel
		if req.URL != nil {
			url = *req.URL
			ch = channel.ForNewURL(ch, url)
		}
		if req.Channel != nil {
			ch = *req.Channel
		}
		resolved, err := channel.Resolve(ch, url)
		if err != nil {
			writeError(c, err)
			return
		}
		upd.Channel = &resolved
	}
	w, err := s.store.UpdateWebhook(c.Request.Context(), id, upd)
	if err != nil {
		s.fail(c, "update webhook", err)
		return
	}
	s.log.Info("webhook updated", "webhook_id", id)
	if !w.Active {
		s.cancelUnfinished(c.Request.Context(), id)
	}
	c.JSON(http.StatusOK, toWebhookJSON(w))
}

func (s *Server) deleteWebhook(c *gin.Context) {
	id, ok := webhookID(c)
	if !ok {
		return
	}
	if err := s.store.DeleteWebhook(c.Request.Context(), id); err != nil {
		s.fail(c, "delete webhook", err)
		return
	}
	s.log.Info("webhook deleted", "webhook_id", id)
	s.cancelUnfinished(c.Request.Context(), id)
	c.Status(http.StatusNoContent)
}

func (s *Server) pingWebhook(c *gin.Context) {
	id, ok := webhookID(c)
	if !ok {
		return
	}
	if _, err := s.store.Webhook(c.Request.Context(), id); err != nil {
		s.fail(c, "ping webhook", err)
		return
	}
	ping := s.ping(c.Request.Context(), id)
	w, err := s.store.Webhook(c.Request.Context(), id)
	if err != nil {
		s.fail(c, "ping webhook", err)
		return
	}
	out := toWebhookJSON(w)
	out.Ping = ping
	c.JSON(http.StatusOK, out)
}

// ping runs a test ping of the webhook on a worker and waits for its result.
// A ping that cannot run at all is reported as not ok, with the reason.
func (s *Server) ping(ctx context.Context, webhookID string) *pingJSON {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PingTimeout)
	defer cancel()

	data, _ := json.Marshal(map[string]string{
		"webhook_id": webhookID,
		"message":    "Test ping from Barfinex Notifier",
	})
	ev, err := notifier.NewEvent("", notifier.EventPing, nil, data, s.now())
	if err != nil {
		return &pingJSON{Error: "ping not sent: " + err.Error()}
	}
	body, err := ev.Envelope()
	if err != nil {
		return &pingJSON{Error: "ping not sent: " + err.Error()}
	}
	run, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       workflows.PingWorkflowID(webhookID, ev.ID),
		TaskQueue:                s.cfg.TaskQueue,
		WorkflowExecutionTimeout: time.Minute,
		StaticSummary:            "test ping of " + webhookID,
	}, workflows.PingWorkflow, activities.PingInput{WebhookID: webhookID, Body: body})
	if err != nil {
		s.log.Error("start ping", "webhook_id", webhookID, "err", err)
		return &pingJSON{Error: "ping not sent: the delivery engine is unavailable"}
	}
	var res activities.PingResult
	if err := run.Get(ctx, &res); err != nil {
		s.log.Warn("ping", "webhook_id", webhookID, "err", err)
		return &pingJSON{Error: "ping did not finish in time"}
	}
	return &pingJSON{OK: res.OK, StatusCode: res.StatusCode, Error: res.Error,
		DurationMS: res.DurationMS}
}
