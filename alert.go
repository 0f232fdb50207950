package notifier

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// RuleType is the kind of condition an alert rule watches.
type RuleType string

// Rule types. Each measures its threshold in its own unit.
const (
	// RuleNoSignals: a strategy has emitted no signal for threshold minutes.
	RuleNoSignals RuleType = "no_signals"
	// RuleDrawdown: the portfolio's drawdown exceeds threshold percent.
	RuleDrawdown RuleType = "drawdown_threshold"
	// RuleServiceDown: a service has been unreachable for threshold seconds.
	RuleServiceDown RuleType = "service_down"
)

// Unit is the unit of the rule type's threshold.
func (t RuleType) Unit() string {
	switch t {
	case RuleNoSignals:
		return "minutes"
	case RuleDrawdown:
		return "percent"
	case RuleServiceDown:
		return "seconds"
	}
	return ""
}

// minThreshold is the smallest threshold each rule type takes: a silence
// or an outage shorter than the time an evaluation takes could never be
// told from no silence at all.
var minThreshold = map[RuleType]float64{
	RuleNoSignals:   0.1,
	RuleDrawdown:    0.01,
	RuleServiceDown: 1,
}

// maxThreshold is the largest threshold each rule type takes: a year of
// silence or of outage, the whole portfolio.
var maxThreshold = map[RuleType]float64{
	RuleNoSignals:   365 * 24 * 60,
	RuleDrawdown:    100,
	RuleServiceDown: 365 * 24 * 3600,
}

// Limits on alert rules.
const (
	MaxRuleWebhooks = 50
	// DefaultResolveAfter is how long a drawdown must stay below the
	// threshold before its alert resolves.
	DefaultResolveAfter = time.Minute
	MaxResolveAfter     = 24 * time.Hour
)

// AlertStatus is whether a rule's condition holds.
type AlertStatus string

// Alert statuses.
const (
	AlertOK     AlertStatus = "ok"
	AlertFiring AlertStatus = "firing"
)

// AlertRule watches one condition and tells its webhooks when it starts and
// stops holding.
type AlertRule struct {
	ID        string
	Name      string
	Type      RuleType
	Threshold float64
	// Strategy is the strategy a no_signals rule watches.
	Strategy string
	// Service is the service a service_down rule watches.
	Service string
	// WebhookIDs are the webhooks the rule's alerts go to, whatever event
	// types they subscribe to.
	WebhookIDs []string
	Active     bool
	// ResolveAfter is how long a drawdown_threshold rule's drawdown must
	// stay below its threshold before the alert resolves.
	ResolveAfter time.Duration
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Target names what the rule watches: its strategy, its service, or the
// portfolio.
func (r *AlertRule) Target() string {
	switch r.Type {
	case RuleNoSignals:
		return r.Strategy
	case RuleServiceDown:
		return r.Service
	}
	return "portfolio"
}

// AlertRuleUpdate holds the fields a change sets; nil fields stay as they
// are. A rule's type cannot change.
type AlertRuleUpdate struct {
	Name         *string
	Threshold    *float64
	Strategy     *string
	Service      *string
	WebhookIDs   []string
	Active       *bool
	ResolveAfter *time.Duration
}

// Apply sets the fields of u on r.
func (u *AlertRuleUpdate) Apply(r *AlertRule) {
	if u.Name != nil {
		r.Name = *u.Name
	}
	if u.Threshold != nil {
		r.Threshold = *u.Threshold
	}
	if u.Strategy != nil {
		r.Strategy = *u.Strategy
	}
	if u.Service != nil {
		r.Service = *u.Service
	}
	if u.WebhookIDs != nil {
		r.WebhookIDs = u.WebhookIDs
	}
	if u.Active != nil {
		r.Active = *u.Active
	}
	if u.ResolveAfter != nil {
		r.ResolveAfter = *u.ResolveAfter
	}
}

var strategyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$`)

// Validate checks a rule's fields and normalizes them in place: webhook ids
// are deduplicated. A rule may be left with no webhook when its webhooks
// are deleted; a new rule needs one (the API checks).
func (r *AlertRule) Validate() error {
	name, err := validateName(r.Name)
	if err != nil {
		return err
	}
	r.Name = name
	max, ok := maxThreshold[r.Type]
	if !ok {
		if r.Type == "" {
			return Invalid("type", "is required")
		}
		return Invalid("type", "must be no_signals, drawdown_threshold or service_down")
	}
	if min := minThreshold[r.Type]; math.IsNaN(r.Threshold) || r.Threshold < min || r.Threshold > max {
		return Invalid("threshold", "must be a number of %s from %g to %g", r.Type.Unit(), min, max)
	}
	switch r.Type {
	case RuleNoSignals:
		if r.Strategy == "" {
			return Invalid("strategy", "is required for a no_signals rule")
		}
		if !strategyPattern.MatchString(r.Strategy) {
			return Invalid("strategy", "must be 1 to 128 letters, digits, '_', '.', ':', '/' or '-'")
		}
	case RuleServiceDown:
		if r.Service == "" {
			return Invalid("service", "is required for a service_down rule")
		}
		if !ValidServiceName(r.Service) {
			return Invalid("service", serviceNameRule)
		}
	}
	if r.Type != RuleNoSignals {
		if r.Strategy != "" {
			return Invalid("strategy", "applies to no_signals rules only")
		}
	}
	if r.Type != RuleServiceDown && r.Service != "" {
		return Invalid("service", "applies to service_down rules only")
	}
	if r.Type == RuleDrawdown {
		if r.ResolveAfter < 0 || r.ResolveAfter > MaxResolveAfter {
			return Invalid("resolve_after_seconds", "must be between 0 and %d",
				int(MaxResolveAfter/time.Second))
		}
	} else if r.ResolveAfter != 0 {
		return Invalid("resolve_after_seconds", "applies to drawdown_threshold rules only")
	}
	ids, err := validateRuleWebhooks(r.WebhookIDs)
	if err != nil {
		return err
	}
	r.WebhookIDs = ids
	return nil
}

func validateRuleWebhooks(ids []string) ([]string, error) {
	if len(ids) > MaxRuleWebhooks {
		return nil, Invalid("webhook_ids", "must name at most %d webhooks", MaxRuleWebhooks)
	}
	seen := map[string]bool{}
	out := []string{}
	for _, id := range ids {
		if !ValidWebhookID(id) {
			return nil, Invalid("webhook_ids", "%q is not a webhook id", truncate(id, 64))
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// AlertState is where a rule stands, as its workflow last saw it.
type AlertState struct {
	Status AlertStatus
	// Since is when the rule entered Status.
	Since time.Time
	// CurrentValue is the watched quantity in the threshold's unit: minutes
	// of silence, percent of drawdown, seconds of outage.
	CurrentValue  float64
	LastEvaluated time.Time
	// Episode counts the times the rule has fired.
	Episode int
	// ConditionSince is when the condition of the latest firing began to
	// hold: when the silence or the outage began, or the snapshot that
	// crossed the threshold.
	ConditionSince time.Time
}

// Alert message formats, in the manner of "Portfolio drawdown exceeded
// 5.0% (current: 5.3%)".
func AlertMessage(r *AlertRule, firing bool, value float64) string {
	switch r.Type {
	case RuleNoSignals:
		if firing {
			return fmt.Sprintf("Strategy %s has emitted no signal for %s minutes (threshold: %s)",
				r.Strategy, formatFloat(value), formatFloat(r.Threshold))
		}
		return fmt.Sprintf("Strategy %s is emitting signals again", r.Strategy)
	case RuleDrawdown:
		if firing {
			return fmt.Sprintf("Portfolio drawdown exceeded %.1f%% (current: %.1f%%)", r.Threshold, value)
		}
		return fmt.Sprintf("Portfolio drawdown is back below %.1f%% (current: %.1f%%)",
			r.Threshold, value)
	case RuleServiceDown:
		if firing {
			return fmt.Sprintf("Service %s has been unreachable for %s seconds (threshold: %s)",
				r.Service, formatFloat(value), formatFloat(r.Threshold))
		}
		return fmt.Sprintf("Service %s is reachable again", r.Service)
	}
	return ""
}

func formatFloat(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".")
}

// Service is a connected service whose health the notifier watches.
type Service struct {
	Name          string
	HealthURL     string
	CheckInterval time.Duration
	Health        ServiceHealth
	CreatedAt     time.Time
}

// ServiceStatus is what the latest probes of a service found.
type ServiceStatus string

// Service statuses.
const (
	ServiceUnknown ServiceStatus = "unknown"
	ServiceUp      ServiceStatus = "up"
	ServiceDown    ServiceStatus = "down"
)

// ServiceHealth is a service's health as its monitor last found it.
type ServiceHealth struct {
	Status ServiceStatus
	// Since is when the service entered Status.
	Since       *time.Time
	LastChecked *time.Time
	// LastError says why the latest failed probe failed.
	LastError string
}

// Limits on services.
const (
	DefaultCheckInterval = 10 * time.Second
	MaxCheckInterval     = time.Hour
	// ProbeTimeout is how long a health probe may take: a service that does
	// not answer 2xx within it is unreachable.
	ProbeTimeout = 5 * time.Second
)

var serviceNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

const serviceNameRule = "must be 1 to 63 lower-case letters, digits, '_', '.' or '-', " +
	"starting with a letter or digit"

// ValidServiceName reports whether name may name a service.
func ValidServiceName(name string) bool { return serviceNamePattern.MatchString(name) }

// Validate checks a new service's fields and sets defaults in place.
func (s *Service) Validate() error {
	if s.Name == "" {
		return Invalid("name", "is required")
	}
	if !ValidServiceName(s.Name) {
		return Invalid("name", serviceNameRule)
	}
	if err := validateHealthURL(s.HealthURL); err != nil {
		return err
	}
	if s.CheckInterval == 0 {
		s.CheckInterval = DefaultCheckInterval
	}
	if s.CheckInterval < time.Second || s.CheckInterval > MaxCheckInterval {
		return Invalid("check_interval_seconds", "must be between 1 and %d",
			int(MaxCheckInterval/time.Second))
	}
	return nil
}

// validateHealthURL accepts http and https URLs. Unlike webhook URLs, they
// may name private and loopback addresses: the services of the stack are
// the notifier's neighbours.
func validateHealthURL(raw string) error {
	const field = "health_url"
	if raw == "" {
		return Invalid(field, "is required")
	}
	if len(raw) > MaxURLLength {
		return Invalid(field, "must be at most %d bytes", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return Invalid(field, "must be an absolute http or https URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Invalid(field, "must use http or https")
	}
	if u.User != nil {
		return Invalid(field, "must not hold credentials")
	}
	if u.Fragment != "" {
		return Invalid(field, "must not have a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return Invalid(field, "has no valid port")
		}
	}
	return nil
}

// MaskHealthURL hides the values of a health URL's query, which may hold
// a token, for showing the URL in reads and events.
func MaskHealthURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.RawQuery == "" {
		return raw
	}
	q := u.Query()
	for k := range q {
		q[k] = []string{"***"}
	}
	u.RawQuery = strings.ReplaceAll(q.Encode(), "%2A%2A%2A", "***")
	return u.String()
}

// Portfolio is the account's equity, its peak and the drawdown between them.
type Portfolio struct {
	Equity float64
	// Peak is the highest equity ever recorded: the high-water mark.
	Peak float64
	// At is the time of the latest snapshot.
	At time.Time
}

// Drawdown is how far equity is below its peak, in percent of the peak.
func (p Portfolio) Drawdown() float64 {
	if p.Peak <= 0 || p.Equity >= p.Peak {
		return 0
	}
	return (p.Peak - p.Equity) / p.Peak * 100
}

// MaxEquity bounds the equity a snapshot may carry.
const MaxEquity = 1e15

// ValidEquity checks a snapshot's equity.
func ValidEquity(equity float64) error {
	if math.IsNaN(equity) || math.IsInf(equity, 0) || equity < 0 || equity > MaxEquity {
		return Invalid("equity", "must be a number from 0 to %g", float64(MaxEquity))
	}
	return nil
}

// SignalStrategy returns the strategy a signal.emitted event names, "" for
// other events.
func SignalStrategy(e *Event) string {
	if e.Type != EventSignalEmitted {
		return ""
	}
	var data struct {
		Strategy string `json:"strategy"`
	}
	if json.Unmarshal(e.Data, &data) != nil {
		return ""
	}
	return data.Strategy
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
