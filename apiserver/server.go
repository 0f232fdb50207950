// Package apiserver is the notifier's HTTP API: a thin Gin layer that
// validates input, writes the store and starts Temporal workflows.
package apiserver

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/egress"
	"github.com/barfinex/notifier/metrics"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/workflows"
)

// Config configures the API.
type Config struct {
	// Token is the bearer token every /v1 request must carry. Empty disables
	// authentication; the command refuses that off loopback.
	Token string
	// URLPolicy says which webhook URLs are well formed.
	URLPolicy notifier.URLPolicy
	// Egress refuses, on create and change, URLs whose targets are closed.
	Egress egress.Policy
	// MaxEventBytes caps the size of a published event's data. Default
	// 256 KiB.
	MaxEventBytes int64
	// TaskQueue is where workflows are started. Default workflows.TaskQueue.
	TaskQueue string
	// Retry is the schedule of the deliveries the API starts: those of an
	// event with few webhooks, and those retried by hand. Default
	// activities.DefaultRetry.
	Retry activities.RetryConfig
	// PingTimeout bounds how long a request waits for a test ping. Default
	// 15 s.
	PingTimeout time.Duration
}

// Server serves the notifier's HTTP API.
type Server struct {
	store    *sqlstore.Store
	temporal client.Client
	cfg      Config
	log      *slog.Logger
	schemas  schemas
	now      func() time.Time
}

// New returns a Server.
func New(store *sqlstore.Store, tc client.Client, cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = 256 << 10
	}
	if cfg.TaskQueue == "" {
		cfg.TaskQueue = workflows.TaskQueue
	}
	if cfg.Retry.MaximumAttempts == 0 {
		cfg.Retry = activities.DefaultRetry
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 15 * time.Second
	}
	schemas, err := compileSchemas()
	if err != nil {
		return nil, err
	}
	return &Server{store: store, temporal: tc, cfg: cfg, log: log, schemas: schemas,
		now: time.Now}, nil
}

// maxConfigBody caps the body of every request but event publishing.
const maxConfigBody = 64 << 10

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// Every answer is JSON: no redirects to a path with or without a slash.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.Use(s.logRequests, s.recover)
	r.NoRoute(func(c *gin.Context) {
		writeError(c, notifier.Errorf(notifier.ENOTFOUND, "no route %s %s",
			c.Request.Method, c.Request.URL.Path))
	})
	r.NoMethod(func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusMethodNotAllowed, errorBody("method_not_allowed",
			"method "+c.Request.Method+" is not allowed here", ""))
	})

	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.GET("/metrics", gin.WrapH(promhttp.Handler()))

	v1 := r.Group("/v1", s.authenticate)
	v1.POST("/webhooks", s.createWebhook)
	v1.GET("/webhooks", s.listWebhooks)
	v1.GET("/webhooks/:id", s.getWebhook)
	v1.PATCH("/webhooks/:id", s.updateWebhook)
	v1.DELETE("/webhooks/:id", s.deleteWebhook)
	v1.POST("/webhooks/:id/ping", s.pingWebhook)
	v1.GET("/webhooks/:id/deliveries", s.listDeliveries)
	v1.GET("/deliveries/:id", s.getDelivery)
	v1.POST("/deliveries/:id/retry", s.retryDelivery)
	v1.POST("/events", s.publishEvent)
	v1.GET("/event-types", s.eventTypes)
	v1.POST("/alert-rules", s.createRule)
	v1.GET("/alert-rules", s.listRules)
	v1.GET("/alert-rules/:id", s.getRule)
	v1.PATCH("/alert-rules/:id", s.updateRule)
	v1.DELETE("/alert-rules/:id", s.deleteRule)
	v1.POST("/services", s.createService)
	v1.GET("/services", s.listServices)
	v1.GET("/services/:name", s.getService)
	v1.DELETE("/services/:name", s.deleteService)
	v1.POST("/portfolio/snapshots", s.recordSnapshot)
	v1.GET("/portfolio", s.getPortfolio)
	return r
}

func (s *Server) authenticate(c *gin.Context) {
	if s.cfg.Token == "" {
		return
	}
	scheme, token, _ := strings.Cut(c.GetHeader("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") ||
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(s.cfg.Token)) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="notifier"`)
		writeError(c, notifier.Errorf(notifier.EUNAUTHORIZED, "a valid bearer token is required"))
		c.Abort()
	}
}

func (s *Server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	metrics.HTTPRequests.WithLabelValues(c.Request.Method, route,
		strconv.Itoa(c.Writer.Status())).Inc()
	s.log.Info("http request", "method", c.Request.Method, "path", route,
		"status", c.Writer.Status(), "duration_ms", time.Since(start).Milliseconds())
}

func (s *Server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic in handler", "path", c.FullPath(), "err", v)
			c.AbortWithStatusJSON(http.StatusInternalServerError,
				errorBody(notifier.EINTERNAL, "internal error", ""))
		}
	}()
	c.Next()
}

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
	defer cancel()
	checks := gin.H{"store": "ok", "temporal": "ok"}
	ready := true
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness: store", "err", err)
		checks["store"], ready = "unavailable", false
	}
	if _, err := s.temporal.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		s.log.Warn("readiness: temporal", "err", err)
		checks["temporal"], ready = "unavailable", false
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, gin.H{"ready": ready, "checks": checks})
}
