package notifier

import (
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on webhook fields.
const (
	MaxNameLength   = 200
	MaxURLLength    = 2048
	MaxSecretLength = 1024
)

// Channel says how deliveries reach a webhook: as the envelope (generic),
// or rendered for the service its URL belongs to. Type is auto, generic,
// slack, telegram, pagerduty or discord; the other fields apply to some
// types only.
type Channel struct {
	Type string `json:"type"`
	// Telegram: the chat to post to, and "HTML" or "" (plain text).
	ChatID    string `json:"chat_id,omitempty"`
	ParseMode string `json:"parse_mode,omitempty"`
	// PagerDuty: the integration's routing key, and event defaults.
	RoutingKey string `json:"routing_key,omitempty"`
	Severity   string `json:"severity,omitempty"`
	Source     string `json:"source,omitempty"`
	// Auto is set when the type was chosen by the URL, to be chosen again
	// when the URL changes.
	Auto bool `json:"auto,omitempty"`
}

// Reachability is what the last test ping of a webhook found.
type Reachability string

// Reachability values.
const (
	ReachabilityUnknown     Reachability = "unknown"
	Reachable               Reachability = "reachable"
	ReachabilityUnreachable Reachability = "unreachable"
)

// Webhook is a receiver's subscription to event types.
type Webhook struct {
	ID     string
	Name   string
	URL    string
	Events []EventType
	// Secret signs every delivery when set. It never leaves the service.
	Secret string
	Active bool
	// Channel is resolved: never auto.
	Channel   Channel
	CreatedAt time.Time
	UpdatedAt time.Time
	// LastPing is the result of the latest test ping, nil before the first.
	LastPing *PingResult
}

// Reachability reports what the latest test ping found.
func (w *Webhook) Reachability() Reachability {
	switch {
	case w.LastPing == nil:
		return ReachabilityUnknown
	case w.LastPing.OK:
		return Reachable
	default:
		return ReachabilityUnreachable
	}
}

// Subscribed reports whether w takes events of type t.
func (w *Webhook) Subscribed(t EventType) bool {
	for _, e := range w.Events {
		if e == t {
			return true
		}
	}
	return false
}

// PingResult is the outcome of one test ping.
type PingResult struct {
	OK         bool
	StatusCode int
	Error      string
	Duration   time.Duration
	At         time.Time
}

// WebhookUpdate holds the fields a change sets; nil fields stay as they are.
// An empty Secret removes the secret.
type WebhookUpdate struct {
	Name    *string
	URL     *string
	Events  []EventType
	Secret  *string
	Active  *bool
	Channel *Channel
}

// URLPolicy says which webhook URLs are acceptable before any connection is
// made. Addresses are checked again, after resolution, on every connection.
type URLPolicy struct {
	// AllowHTTP accepts plain http URLs as well as https.
	AllowHTTP bool
}

// Validate checks a new webhook's fields and normalizes them in place.
func (w *Webhook) Validate(p URLPolicy) error {
	name, err := validateName(w.Name)
	if err != nil {
		return err
	}
	w.Name = name
	if err := ValidateURL(w.URL, p); err != nil {
		return err
	}
	events, err := validateEvents(w.Events)
	if err != nil {
		return err
	}
	w.Events = events
	return validateSecret(w.Secret)
}

// Validate checks the fields a change sets and normalizes them in place.
func (u *WebhookUpdate) Validate(p URLPolicy) error {
	if u.Name != nil {
		name, err := validateName(*u.Name)
		if err != nil {
			return err
		}
		u.Name = &name
	}
	if u.URL != nil {
		if err := ValidateURL(*u.URL, p); err != nil {
			return err
		}
	}
	if u.Events != nil {
		events, err := validateEvents(u.Events)
		if err != nil {
			return err
		}
		u.Events = events
	}
	if u.Secret != nil {
		return validateSecret(*u.Secret)
	}
	return nil
}

// Apply sets the fields of u on w.
func (u *WebhookUpdate) Apply(w *Webhook) {
	if u.Name != nil {
		w.Name = *u.Name
	}
	if u.URL != nil {
		w.URL = *u.URL
	}
	if u.Events != nil {
		w.Events = u.Events
	}
	if u.Secret != nil {
		w.Secret = *u.Secret
	}
	if u.Active != nil {
		w.Active = *u.Active
	}
	if u.Channel != nil {
		w.Channel = *u.Channel
	}
}

func validateName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", Invalid("name", "is required")
	case utf8.RuneCountInString(name) > MaxNameLength:
		return "", Invalid("name", "must be at most %d characters", MaxNameLength)
	case !utf8.ValidString(name):
		return "", Invalid("name", "must be valid UTF-8")
	}
	return name, nil
}

// ValidateURL checks that raw is an absolute URL a webhook may post to.
func ValidateURL(raw string, p URLPolicy) error {
	if raw == "" {
		return Invalid("url", "is required")
	}
	if len(raw) > MaxURLLength {
		return Invalid("url", "must be at most %d bytes", MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Invalid("url", "is not a valid URL")
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.AllowHTTP:
	case u.Scheme == "http":
		return Invalid("url", "must use https")
	case p.AllowHTTP:
		return Invalid("url", "must be an absolute http or https URL")
	default:
		return Invalid("url", "must be an absolute https URL")
	}
	if u.Hostname() == "" {
		return Invalid("url", "must name a host")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Invalid("url", "has port %s; a port is 1 to 65535", port)
		}
	}
	if u.User != nil {
		return Invalid("url",
			"must not carry credentials; use the webhook secret to authenticate deliveries")
	}
	if u.Fragment != "" {
		return Invalid("url", "must not have a fragment")
	}
	return nil
}

func validateEvents(events []EventType) ([]EventType, error) {
	if len(events) == 0 {
		return nil, Invalid("events", "must list at least one event type")
	}
	seen := make(map[EventType]bool, len(events))
	out := make([]EventType, 0, len(events))
	for _, e := range events {
		if !Subscribable(e) {
			return nil, Invalid("events", "unknown event type %q; see GET /v1/event-types", e)
		}
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out, nil
}

func validateSecret(secret string) error {
	switch {
	case len(secret) > MaxSecretLength:
		return Invalid("secret", "must be at most %d bytes", MaxSecretLength)
	case !utf8.ValidString(secret):
		return Invalid("secret", "must be valid UTF-8")
	case strings.HasPrefix(secret, "sealed:"):
		// The store marks secrets it sealed that way.
		return Invalid("secret", "must not begin with \"sealed:\"")
	}
	return nil
}
