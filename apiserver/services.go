package apiserver

import (
	"context"
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/workflows"
)

type serviceRequest struct {
	Name                 string   `json:"name"`
	HealthURL            string   `json:"health_url"`
	CheckIntervalSeconds *float64 `json:"check_interval_seconds"`
}

type serviceJSON struct {
	Name                 string                 `json:"name"`
	HealthURL            string                 `json:"health_url"`
	CheckIntervalSeconds float64                `json:"check_interval_seconds"`
	Status               notifier.ServiceStatus `json:"status"`
	Since                *string                `json:"since"`
	LastCheckedAt        *string                `json:"last_checked_at"`
	LastError            string                 `json:"last_error,omitempty"`
	CreatedAt            string                 `json:"created_at"`
}

func toServiceJSON(svc *notifier.Service) *serviceJSON {
	return &serviceJSON{
		Name: svc.Name, HealthURL: notifier.MaskHealthURL(svc.HealthURL),
		CheckIntervalSeconds: svc.CheckInterval.Seconds(),
		Status:               svc.Health.Status, Since: optionalTime(svc.Health.Since),
		LastCheckedAt: optionalTime(svc.Health.LastChecked), LastError: svc.Health.LastError,
		CreatedAt: timeJSON(svc.CreatedAt),
	}
}

func (s *Server) createService(c *gin.Context) {
	var req serviceRequest
	if err := decode(c, &req, maxConfigBody); err != nil {
		writeError(c, err)
		return
	}
	svc := notifier.Service{Name: req.Name, HealthURL: req.HealthURL}
	if n := req.CheckIntervalSeconds; n != nil {
		if math.IsNaN(*n) || *n != math.Trunc(*n) || *n < 1 || *n > notifier.MaxCheckInterval.Seconds() {
			writeError(c, notifier.Invalid("check_interval_seconds", "must be a whole number from 1 to %d",
				int(notifier.MaxCheckInterval.Seconds())))
			return
		}
		svc.CheckInterval = time.Duration(*n) * time.Second
	}
	if err := svc.Validate(); err != nil {
		writeError(c, err)
		return
	}
	ctx := c.Request.Context()
	if err := s.store.CreateService(ctx, &svc); err != nil {
		s.fail(c, "create service", err)
		return
	}
	// A monitor still running under the name is a deleted service's, not
	// yet ended: this one replaces it.
	opts := workflows.MonitorStartOptions(svc.Name, s.cfg.TaskQueue)
	opts.WorkflowIDConflictPolicy = enumspb.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING
	opts.WorkflowExecutionErrorWhenAlreadyStarted = false
	_, err := s.temporal.ExecuteWorkflow(ctx, opts,
		workflows.ServiceMonitorWorkflow, workflows.MonitorInput{Service: svc.Name})
	if err != nil {
		s.log.Error("start service monitor", "service", svc.Name, "err", err)
		if err := s.store.DeleteService(context.WithoutCancel(ctx), svc.Name); err != nil {
			s.log.Error("delete service not monitored", "service", svc.Name, "err", err)
		}
		writeError(c, notifier.Errorf(notifier.EUNAVAILABLE,
			"the service's monitor could not be started; nothing was registered, try again"))
		return
	}
	s.log.Info("service registered", "service", svc.Name)
	c.JSON(http.StatusCreated, toServiceJSON(&svc))
}

func serviceName(c *gin.Context) (string, bool) {
	name := c.Param("name")
	if !notifier.ValidServiceName(name) {
		writeError(c, notifier.Errorf(notifier.ENOTFOUND, "service %q not found", name))
		return "", false
	}
	return name, true
}

func (s *Server) getService(c *gin.Context) {
	name, ok := serviceName(c)
	if !ok {
		return
	}
	svc, err := s.store.Service(c.Request.Context(), name)
	if err != nil {
		s.fail(c, "get service", err)
		return
	}
	c.JSON(http.StatusOK, toServiceJSON(svc))
}

func (s *Server) listServices(c *gin.Context) {
	limit, err := limitParam(c)
	if err != nil {
		writeError(c, err)
		return
	}
	svcs, next, err := s.store.Services(c.Request.Context(), limit, c.Query("cursor"))
	if err != nil {
		s.fail(c, "list services", err)
		return
	}
	items := make([]*serviceJSON, len(svcs))
	for i, svc := range svcs {
		items[i] = toServiceJSON(svc)
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": next})
}

func (s *Server) deleteService(c *gin.Context) {
	name, ok := serviceName(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	if err := s.store.DeleteService(ctx, name); err != nil {
		s.fail(c, "delete service", err)
		return
	}
	// The monitor also ends by itself at its next check, finding the
	// service gone.
	err := s.temporal.CancelWorkflow(ctx, workflows.MonitorWorkflowID(name), "")
	var notFound *serviceerror.NotFound
	if err != nil && !errors.As(err, &notFound) {
		s.log.Warn("cancel service monitor", "service", name, "err", err)
	}
	s.log.Info("service deleted", "service", name)
	c.Status(http.StatusNoContent)
}
