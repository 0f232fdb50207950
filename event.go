package notifier

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// EventType names a kind of event.
type EventType string

// The event types the notifier knows. Publishing any other type is refused.
const (
	EventSignalEmitted     EventType = "signal.emitted"
	EventDecisionMade      EventType = "decision.made"
	EventRiskBlocked       EventType = "risk.blocked"
	EventOrderPlaced       EventType = "order.placed"
	EventOrderFilled       EventType = "order.filled"
	EventServiceUp         EventType = "service.up"
	EventServiceDown       EventType = "service.down"
	EventDeploymentCreated EventType = "deployment.created"
	EventDeploymentUpdated EventType = "deployment.updated"
	EventDeploymentDeleted EventType = "deployment.deleted"
	EventAlertTriggered    EventType = "alert.triggered"
	EventAlertResolved     EventType = "alert.resolved"
	EventPing              EventType = "ping"
)

// TimestampLayout is the layout of every timestamp in an envelope: UTC, RFC
// 3339 with milliseconds and a Z.
const TimestampLayout = "2006-01-02T15:04:05.000Z"

// Event is one thing that happened, as published to the notifier.
type Event struct {
	ID        string
	Type      EventType
	Timestamp time.Time
	// Data is the event's JSON object, compact.
	Data json.RawMessage
}

// envelope is the JSON body of every delivery, in field order.
type envelope struct {
	ID        string          `json:"id"`
	Type      EventType       `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Envelope returns the body every delivery of e carries. It is computed once,
// at publish time, and the same bytes are sent on every attempt.
func (e *Event) Envelope() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(envelope{
		ID:        e.ID,
		Type:      e.Type,
		Timestamp: e.Timestamp.UTC().Format(TimestampLayout),
		Data:      e.Data,
	})
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ParseEnvelope reads an envelope back into an event.
func ParseEnvelope(body []byte) (*Event, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	ts, err := time.Parse(TimestampLayout, env.Timestamp)
	if err != nil {
		return nil, err
	}
	return &Event{ID: env.ID, Type: env.Type, Timestamp: ts, Data: env.Data}, nil
}

// NewEvent validates what a publisher sent and returns the event to deliver.
// An empty id gets a fresh one; a nil timestamp is now. data must be a JSON
// object; it is kept as sent, made compact.
func NewEvent(id string, typ EventType, ts *time.Time, data json.RawMessage,
	now time.Time) (*Event, error) {
	if id == "" {
		id = NewEventID()
	} else if !ValidEventID(id) {
		return nil, Invalid("id", "must be 1 to 128 letters, digits, '_', '.', ':' or '-', "+
			"starting with a letter or digit")
	}
	if typ == "" {
		return nil, Invalid("type", "is required")
	}
	if _, ok := LookupEventType(typ); !ok {
		return nil, Invalid("type", "unknown event type %q; see GET /v1/event-types", typ)
	}
	at := now
	if ts != nil {
		if err := validTimestamp(*ts); err != nil {
			return nil, err
		}
		at = *ts
	}
	compact, err := compactObject(data)
	if err != nil {
		return nil, err
	}
	return &Event{ID: id, Type: typ, Timestamp: at.UTC().Truncate(time.Millisecond),
		Data: compact}, nil
}

// validTimestamp refuses times an envelope cannot carry as RFC 3339 in UTC,
// and offsets of a day or more, which no zone has.
func validTimestamp(ts time.Time) error {
	_, offset := ts.Zone()
	utc := ts.UTC()
	switch {
	case offset <= -24*3600 || offset >= 24*3600:
		return Invalid("timestamp", "has an offset of a day or more")
	case utc.Year() < 1970 || utc.Year() > 9999:
		return Invalid("timestamp", "must be between 1970 and 9999, in UTC")
	}
	return nil
}

func compactObject(data json.RawMessage) (json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || bytes.Equal(data, []byte("null")) {
		return json.RawMessage("{}"), nil
	}
	if data[0] != '{' {
		return nil, Invalid("data", "must be a JSON object")
	}
	// Receivers check the signature over the body read as UTF-8 text, so a
	// body that is not valid UTF-8 could never verify.
	if !utf8.Valid(data) {
		return nil, Invalid("data", "must be valid UTF-8")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, Invalid("data", "is not valid JSON: %v", err)
	}
	return buf.Bytes(), nil
}
