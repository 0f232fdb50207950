package notifier

import "encoding/json"

// EventTypeInfo describes one event type for the catalog.
type EventTypeInfo struct {
	Type        EventType       `json:"type"`
	Description string          `json:"description"`
	Schema      json.RawMessage `json:"schema"`
}

// Every event type, in the order the catalog lists them. Schemas describe
// the fields each type is expected to carry; publishers may add others.
var eventTypes = []EventTypeInfo{
	{EventSignalEmitted, "Detector emitted a trading signal.", schema(`{
		"strategy": {"type": "string", "description": "The strategy that emitted the signal."},
		"symbol": {"type": "string", "examples": ["BTCUSDT"]},
		"direction": {"type": "string", "enum": ["LONG", "SHORT"]},
		"score": {"type": "number"}}`, "strategy", "symbol", "direction")},
	{EventDecisionMade, "Advisor decided on a signal: execute, skip or reject.", schema(`{
		"decision": {"type": "string", "enum": ["execute", "skip", "reject"]},
		"strategy": {"type": "string"},
		"symbol": {"type": "string"},
		"reason": {"type": "string"},
		"signal_id": {"type": "string"}}`, "decision")},
	{EventRiskBlocked, "Inspector blocked an execution intent that broke a risk policy.", schema(`{
		"policy": {"type": "string"},
		"reason": {"type": "string"},
		"symbol": {"type": "string"},
		"intent_id": {"type": "string"}}`, "policy")},
	{EventOrderPlaced, "Inspector placed an order on the exchange.", schema(`{
		"order_id": {"type": "string"},
		"exchange": {"type": "string"},
		"symbol": {"type": "string"},
		"side": {"type": "string", "enum": ["BUY", "SELL"]},
		"qty": {"type": ["string", "number"]},
		"price": {"type": ["string", "number"]}}`, "symbol")},
	{EventOrderFilled, "An order was fully filled on the exchange.", schema(`{
		"order_id": {"type": "string"},
		"exchange": {"type": "string"},
		"symbol": {"type": "string"},
		"side": {"type": "string", "enum": ["BUY", "SELL"]},
		"qty": {"type": ["string", "number"]},
		"price": {"type": ["string", "number"]}}`, "symbol")},
	{EventServiceUp, "A connected service that was unreachable is healthy again.", schema(`{
		"service": {"type": "string"},
		"health_url": {"type": "string"},
		"down_since": {"type": "string", "format": "date-time"}}`, "service")},
	{EventServiceDown, "A connected service became unreachable.", schema(`{
		"service": {"type": "string"},
		"health_url": {"type": "string"},
		"error": {"type": "string"},
		"since": {"type": "string", "format": "date-time"}}`, "service")},
	{EventDeploymentCreated, "A service deployment was created through a wizard.", schema(`{
		"deployment_id": {"type": "string"},
		"service": {"type": "string"},
		"config": {"type": "object"}}`, "deployment_id")},
	{EventDeploymentUpdated, "A deployed service's configuration changed.", schema(`{
		"deployment_id": {"type": "string"},
		"service": {"type": "string"},
		"changes": {"type": "object"}}`, "deployment_id")},
	{EventDeploymentDeleted, "A deployed service was removed.", schema(`{
		"deployment_id": {"type": "string"},
		"service": {"type": "string"}}`, "deployment_id")},
	{EventAlertTriggered, "An alert rule's condition became true.", schema(`{
		"rule": {"type": "string", "enum": ["no_signals", "drawdown_threshold", "service_down"]},
		"rule_id": {"type": "string"},
		"rule_name": {"type": "string"},
		"threshold": {"type": "number"},
		"current_value": {"type": "number"},
		"message": {"type": "string"},
		"strategy": {"type": "string"},
		"service": {"type": "string"},
		"since": {"type": "string", "format": "date-time"}}`,
		"rule", "threshold", "current_value", "message")},
	{EventAlertResolved, "A firing alert rule's condition is no longer true.", schema(`{
		"rule": {"type": "string", "enum": ["no_signals", "drawdown_threshold", "service_down"]},
		"rule_id": {"type": "string"},
		"rule_name": {"type": "string"},
		"threshold": {"type": "number"},
		"current_value": {"type": "number"},
		"message": {"type": "string"},
		"strategy": {"type": "string"},
		"service": {"type": "string"},
		"since": {"type": "string", "format": "date-time"}}`, "rule", "message")},
	{EventPing, "A test delivery sent when a webhook is created or on demand.", schema(`{
		"webhook_id": {"type": "string"},
		"message": {"type": "string"}}`, "webhook_id")},
}

func schema(properties string, required ...string) json.RawMessage {
	s := map[string]any{
		"$schema":              "https://json-schema.org/draft/2020-12/schema",
		"type":                 "object",
		"properties":           json.RawMessage(properties),
		"required":             required,
		"additionalProperties": true,
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic("notifier: bad event schema: " + err.Error())
	}
	return b
}

// EventTypes returns the catalog of event types.
func EventTypes() []EventTypeInfo {
	return append([]EventTypeInfo(nil), eventTypes...)
}

// LookupEventType returns the catalog entry of t.
func LookupEventType(t EventType) (EventTypeInfo, bool) {
	for _, info := range eventTypes {
		if info.Type == t {
			return info, true
		}
	}
	return EventTypeInfo{}, false
}

// Subscribable reports whether a webhook may list t in its events. The test
// ping goes to every webhook and needs no subscription.
func Subscribable(t EventType) bool {
	_, ok := LookupEventType(t)
	return ok && t != EventPing
}
