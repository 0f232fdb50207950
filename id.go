package notifier

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"regexp"
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
