package notifier

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Identifier prefixes.
const (
	EventIDPrefix    = "evt_"
	WebhookIDPrefix  = "wh_"
	DeliveryIDPrefix = "dlv_"
)

var (
	lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

	// An event id may come from a publisher; it becomes part of workflow ids
	// and URLs, so it is kept to a safe alphabet.
	eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
	// Generated ids: a prefix and 26 characters of lower-case base32.
	webhookIDPattern  = regexp.MustCompile(`^wh_[a-z2-7]{26}$`)
	deliveryIDPattern = regexp.MustCompile(`^dlv_[a-z2-7]{26}$`)
)

func randomID(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	return prefix + lowerBase32.EncodeToString(b[:])
}

// NewEventID returns a fresh random event id.
func NewEventID() string { return randomID(EventIDPrefix) }

// NewWebhookID returns a fresh random webhook id.
func NewWebhookID() string { return randomID(WebhookIDPrefix) }

// DeliveryID returns the id of the delivery of one event to one webhook. It
// follows from the pair alone, so the same pair always names the same delivery.
func DeliveryID(eventID, webhookID string) string {
	sum := sha256.Sum256([]byte(eventID + "\x00" + webhookID))
	return DeliveryIDPrefix + lowerBase32.EncodeToString(sum[:16])
}

// ValidEventID reports whether id may be used as an event id.
func ValidEventID(id string) bool { return eventIDPattern.MatchString(id) }

// ValidWebhookID reports whether id has the form of a webhook id.
func ValidWebhookID(id string) bool { return webhookIDPattern.MatchString(id) }

// ValidDeliveryID reports whether id has the form of a delivery id.
func ValidDeliveryID(id string) bool { return deliveryIDPattern.MatchString(id) }

// RuleIDPrefix starts every alert rule id.
const RuleIDPrefix = "rule_"

var ruleIDPattern = regexp.MustCompile(`^rule_[a-z2-7]{26}$`)

// NewRuleID returns a fresh random alert rule id.
func NewRuleID() string { return randomID(RuleIDPrefix) }

// ValidRuleID reports whether id has the form of an alert rule id.
func ValidRuleID(id string) bool { return ruleIDPattern.MatchString(id) }

// The notifier names its own events, alerts and changes of a service's
// health, under prefixes that publishers cannot use: a published event can
// never take the id of an alert still to come.
const (
	alertEventPrefix   = "alert:"
	serviceEventPrefix = "service:"
)

// AlertEventID names the alert a rule sends when an episode fires
// (triggered) or ends.
func AlertEventID(ruleID string, episode int, typ EventType) string {
	suffix := "triggered"
	if typ == EventAlertResolved {
		suffix = "resolved"
	}
	return fmt.Sprintf("%s%s:%d:%s", alertEventPrefix, ruleID, episode, suffix)
}

// ServiceEventID names the event of a service's change of health to status
// at a moment. A service name holds no ':', so no two services' ids meet.
func ServiceEventID(service string, status ServiceStatus, at time.Time) string {
	return fmt.Sprintf("%s%s:%s:%d", serviceEventPrefix, service, status, at.UnixMilli())
}

// ReservedEventID reports whether id is of the notifier's own naming.
func ReservedEventID(id string) bool {
	return strings.HasPrefix(id, alertEventPrefix) || strings.HasPrefix(id, serviceEventPrefix)
}
