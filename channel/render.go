package channel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"sort"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/barfinex/notifier"
)

// message is an event as a person reads it: a title line and the event's
// fields, one a line.
type message struct {
	Title  string
	Fields [][2]string // key, value
	Footer string
}

func describe(ev *notifier.Event) message {
	var data map[string]any
	dec := json.NewDecoder(bytes.NewReader(ev.Data))
	dec.UseNumber()
	_ = dec.Decode(&data)
	get := func(k string) string {
		if v, ok := data[k]; ok && v != nil {
			return value(v)
		}
		return ""
	}
	join := func(parts ...string) string {
		var out []string
		for _, p := range parts {
			if strings.TrimSpace(p) != "" {
				out = append(out, p)
			}
		}
		return strings.Join(out, " ")
	}
	var title string
	switch ev.Type {
	case notifier.EventSignalEmitted:
		title = "Signal: " + join(get("direction"), get("symbol"))
		if s := get("strategy"); s != "" {
			title += " from " + s
		}
	case notifier.EventDecisionMade:
		title = "Decision: " + join(get("decision"), get("symbol"))
	case notifier.EventRiskBlocked:
		title = "Risk blocked: " + join(get("policy"), get("symbol"))
	case notifier.EventOrderPlaced, notifier.EventOrderFilled:
		verb := "Order placed"
		if ev.Type == notifier.EventOrderFilled {
			verb = "Order filled"
		}
		title = verb + ": " + join(get("side"), get("qty"), get("symbol"))
		if p := get("price"); p != "" {
			title += " @ " + p
		}
	case notifier.EventServiceUp:
		title = "Service up: " + get("service")
	case notifier.EventServiceDown:
		title = "Service down: " + get("service")
	case notifier.EventDeploymentCreated, notifier.EventDeploymentUpdated,
		notifier.EventDeploymentDeleted:
		verb := strings.TrimPrefix(string(ev.Type), "deployment.")
		title = "Deployment " + verb + ": " + join(get("deployment_id"), get("service"))
	case notifier.EventAlertTriggered:
		title = "Alert: " + firstNonEmpty(get("message"), get("rule_name"), get("rule"))
	case notifier.EventAlertResolved:
		title = "Resolved: " + firstNonEmpty(get("message"), get("rule_name"), get("rule"))
	case notifier.EventPing:
		title = "Test ping from Barfinex Notifier"
	default:
		title = string(ev.Type)
	}
	m := message{Title: strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(title), ":")),
		Footer: fmt.Sprintf("%s · %s · %s", ev.Type, ev.ID,
			ev.Timestamp.UTC().Format(notifier.TimestampLayout))}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.Fields = append(m.Fields, [2]string{k, value(data[k])})
	}
	return m
}

func value(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// plainText is the message as plain lines, for Discord and fallbacks.
func plainText(ev *notifier.Event) string {
	m := describe(ev)
	var b strings.Builder
	b.WriteString(m.Title)
	for _, f := range m.Fields {
		b.WriteString("\n" + f[0] + ": " + f[1])
	}
	b.WriteString("\n" + m.Footer)
	return b.String()
}

// truncate cuts s to at most n UTF-16 code units (how Telegram, Discord and
// Slack count characters), on a character boundary, ending in an ellipsis
// when cut.
func truncate(s string, n int) string {
	if utf16Len(s) <= n {
		return s
	}
	units := 0
	for i, r := range s {
		w := utf16.RuneLen(r)
		if w < 0 {
			w = 1
		}
		if units+w > n-1 {
			return s[:i] + "…"
		}
		units += w
	}
	return s
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if w := utf16.RuneLen(r); w > 0 {
			n += w
		} else {
			n++
		}
	}
	return n
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning to.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func renderSlack(ev *notifier.Event) any {
	m := describe(ev)
	var lines []string
	for _, f := range m.Fields {
		lines = append(lines, "*"+slackEscape(f[0])+":* "+slackEscape(f[1]))
	}
	body := truncate(strings.Join(lines, "\n"), 2900)
	if body == "" {
		body = " "
	}
	return map[string]any{
		"text": truncate(slackEscape(m.Title), 3000),
		"blocks": []any{
			map[string]any{"type": "header", "text": map[string]any{
				"type": "plain_text", "text": truncate(m.Title, 150)}},
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": body}},
			map[string]any{"type": "context", "elements": []any{
				map[string]any{"type": "mrkdwn", "text": slackEscape(m.Footer)}}},
		},
	}
}

// TelegramLimit is the most characters a Telegram message may hold.
const TelegramLimit = 4096

func renderTelegram(s notifier.Channel, ev *notifier.Event) any {
	out := map[string]any{"chat_id": s.ChatID, "disable_web_page_preview": true}
	if s.ParseMode == "" {
		out["text"] = truncate(plainText(ev), TelegramLimit)
		return out
	}
	out["text"], out["parse_mode"] = telegramHTML(describe(ev), TelegramLimit), "HTML"
	return out
}

// telegramHTML renders m in Telegram's HTML within limit characters. Lines
// are dropped whole from the end, so no tag or entity is ever cut; a title
// too long alone is cut before it is escaped.
func telegramHTML(m message, limit int) string {
	const more = "\n…"
	title := m.Title
	head := func() string { return "<b>" + html.EscapeString(title) + "</b>" }
	for utf16Len(head())+utf16Len(more) > limit {
		r := []rune(title)
		title = string(r[:len(r)*3/4])
	}
	lines := []string{head()}
	for _, f := range m.Fields {
		lines = append(lines, html.EscapeString(f[0])+": <code>"+html.EscapeString(f[1])+"</code>")
	}
	lines = append(lines, "<i>"+html.EscapeString(m.Footer)+"</i>")
	text := strings.Join(lines, "\n")
	for utf16Len(text) > limit {
		lines = lines[:len(lines)-1]
		text = strings.Join(lines, "\n") + more
	}
	return text
}

// instant writes a time the same way however it was written, so that a
// trigger and its resolve agree.
func instant(s string) string {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(notifier.TimestampLayout)
	}
	return s
}

// PagerDuty event actions.
const (
	trigger = "trigger"
	resolve = "resolve"
)

func renderPagerDuty(s notifier.Channel, ev *notifier.Event, envelope []byte) any {
	m := describe(ev)
	var data map[string]any
	_ = json.Unmarshal(ev.Data, &data)
	str := func(k string) string { v, _ := data[k].(string); return v }

	action, severity := trigger, s.Severity
	dedup := "barfinex:" + ev.ID
	switch ev.Type {
	case notifier.EventAlertTriggered, notifier.EventAlertResolved:
		// One incident per episode of a rule on its target: the trigger and
		// the resolve of one episode share its start.
		target := firstNonEmpty(str("strategy"), str("service"), "portfolio")
		dedup = "barfinex:alert:" + str("rule") + ":" + str("rule_id") + ":" + target + ":" +
			instant(str("since"))
		if ev.Type == notifier.EventAlertResolved {
			action = resolve
		}
	case notifier.EventServiceDown, notifier.EventServiceUp:
		since := str("since")
		if ev.Type == notifier.EventServiceUp {
			since, action = str("down_since"), resolve
		}
		dedup = "barfinex:service:" + str("service") + ":" + instant(since)
	default:
		severity = "info"
	}
	payload := map[string]any{
		"summary":        truncate(m.Title, 1024),
		"source":         s.Source,
		"severity":       severity,
		"timestamp":      ev.Timestamp.UTC().Format(notifier.TimestampLayout),
		"custom_details": json.RawMessage(envelope),
	}
	if c := str("service"); c != "" {
		payload["component"] = c
	}
	if ev.Type == notifier.EventPing {
		// A test ping must not page anyone: resolving a key no incident
		// has is accepted, and proves the routing key.
		action, dedup = resolve, "barfinex:ping:"+ev.ID
	}
	return map[string]any{
		"routing_key":  s.RoutingKey,
		"event_action": action,
		"dedup_key":    truncate(dedup, 255),
		"payload":      payload,
	}
}
