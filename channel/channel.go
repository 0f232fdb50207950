// Package channel renders events for the services a webhook can point at
// (Slack, Telegram, PagerDuty, Discord, or any receiver of the generic
// envelope) and reads their answers the way each service defines them.
package channel

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/barfinex/notifier"
)

// Types of channel.
const (
	Auto      = "auto"
	Generic   = "generic"
	Slack     = "slack"
	Telegram  = "telegram"
	PagerDuty = "pagerduty"
	Discord   = "discord"
)

// Resolve validates s for a webhook URL and fills what follows from it: the
// type when Auto (or empty), chosen by the URL's host, and the Telegram
// chat or PagerDuty routing key when the URL's query carries them.
func Resolve(s notifier.Channel, rawURL string) (notifier.Channel, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return s, notifier.Invalid("url", "is not a valid URL")
	}
	if s.Type == "" || s.Type == Auto {
		s.Type = typeForHost(strings.TrimSuffix(strings.ToLower(u.Hostname()), "."), u.Path)
		s.Auto = true
	}
	q := u.Query()
	switch s.Type {
	case Generic, Slack, Discord:
	case Telegram:
		if s.ChatID == "" {
			s.ChatID = q.Get("chat_id")
		}
		if s.ChatID == "" {
			return s, notifier.Invalid("channel.chat_id",
				"is required for Telegram (or give chat_id in the URL)")
		}
		if s.ParseMode != "" && s.ParseMode != "HTML" {
			return s, notifier.Invalid("channel.parse_mode", "must be HTML or empty (plain text)")
		}
		if !strings.HasSuffix(u.Path, "/sendMessage") {
			return s, notifier.Invalid("url",
				"a Telegram URL is https://api.telegram.org/bot<token>/sendMessage")
		}
	case PagerDuty:
		if s.RoutingKey == "" {
			s.RoutingKey = q.Get("routing_key")
		}
		if s.RoutingKey == "" {
			return s, notifier.Invalid("channel.routing_key",
				"is required for PagerDuty (or give routing_key in the URL)")
		}
		switch s.Severity {
		case "":
			s.Severity = "error"
		case "critical", "error", "warning", "info":
		default:
			return s, notifier.Invalid("channel.severity", "must be critical, error, warning or info")
		}
		if s.Source == "" {
			s.Source = "barfinex-notifier"
		}
	default:
		return s, notifier.Invalid("channel.type",
			"must be auto, generic, slack, telegram, pagerduty or discord")
	}
	if len(s.ChatID) > 64 || len(s.RoutingKey) > 64 || len(s.Source) > 255 {
		return s, notifier.Invalid("channel", "a setting is too long")
	}
	return s, nil
}

var discordPath = regexp.MustCompile(`^/api/(v\d+/)?webhooks/`)

func typeForHost(host, path string) string {
	switch {
	case host == "hooks.slack.com":
		return Slack
	case host == "api.telegram.org":
		return Telegram
	case host == "events.pagerduty.com" || host == "events.eu.pagerduty.com":
		return PagerDuty
	case (host == "discord.com" || host == "discordapp.com" ||
		strings.HasSuffix(host, ".discord.com")) &&
		discordPath.MatchString(path):
		return Discord
	default:
		return Generic
	}
}

// Masked returns s as reads show it: the routing key cut to its last four
// characters.
func Masked(s notifier.Channel) notifier.Channel {
	if n := len(s.RoutingKey); n > 0 {
		s.RoutingKey = "…" + s.RoutingKey[max(0, n-4):]
	}
	return s
}

// ForNewURL returns the settings to resolve when a webhook's URL changes
// to rawURL and its channel is not given anew: a channel that was chosen by
// the old URL is chosen again by the new one, and a chat id or routing key
// the new URL carries replaces the old.
func ForNewURL(s notifier.Channel, rawURL string) notifier.Channel {
	if s.Auto {
		return notifier.Channel{Type: Auto}
	}
	if u, err := url.Parse(rawURL); err == nil {
		q := u.Query()
		if q.Has("chat_id") {
			s.ChatID = ""
		}
		if q.Has("routing_key") {
			s.RoutingKey = ""
		}
	}
	return s
}

// MaskBody hides the routing key a rendered body carries, for the
// delivery log.
func MaskBody(s notifier.Channel, body string) string {
	if s.RoutingKey == "" {
		return body
	}
	return strings.ReplaceAll(body, s.RoutingKey, Masked(s).RoutingKey)
}

// MaskURL hides the credentials a channel URL carries in its path (Slack,
// Discord and Telegram tokens) and query (routing keys), for display.
func MaskURL(s notifier.Channel, rawURL string) string {
	if s.Type == Generic {
		return rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	parts := strings.Split(u.Path, "/")
	for i, p := range parts {
		secret := (s.Type == Slack && i >= 3) || (s.Type == Discord && i >= 4) ||
			(s.Type == Telegram && strings.HasPrefix(p, "bot"))
		if secret && len(p) > 4 {
			parts[i] = p[:2] + "…" + p[len(p)-2:]
		}
	}
	u.Path = strings.Join(parts, "/")
	if q := u.Query(); q.Has("routing_key") {
		q.Set("routing_key", "…")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Request is what to send for one attempt.
type Request struct {
	URL  string
	Body []byte
}

// Render returns the request that delivers the event whose envelope is body
// through the channel.
func Render(s notifier.Channel, rawURL string, body []byte) (Request, error) {
	ev, err := notifier.ParseEnvelope(body)
	if err != nil {
		return Request{}, fmt.Errorf("render: %w", err)
	}
	var payload any
	switch s.Type {
	case Generic, "":
		return Request{URL: rawURL, Body: body}, nil
	case Slack:
		payload = renderSlack(ev)
	case Telegram:
		payload = renderTelegram(s, ev)
	case Discord:
		payload = map[string]any{"content": truncate(plainText(ev), 2000),
			// Publishers' text must not ping @everyone or a role.
			"allowed_mentions": map[string]any{"parse": []string{}}}
		rawURL = withQuery(rawURL, "wait", "true")
	case PagerDuty:
		payload = renderPagerDuty(s, ev, body)
	default:
		return Request{}, fmt.Errorf("render: unknown channel %q", s.Type)
	}
	out, err := json.Marshal(payload)
	if err != nil {
		return Request{}, fmt.Errorf("render: %w", err)
	}
	return Request{URL: rawURL, Body: out}, nil
}

func withQuery(rawURL, key, value string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// Verdict is what a channel's answer means.
type Verdict struct {
	OK bool
	// Permanent: the request will never be accepted as it is; do not retry.
	Permanent bool
	// RetryAfter is how long the service asked to wait, zero if it did not.
	RetryAfter time.Duration
	// Reason says why the answer is not OK.
	Reason string
	// AsPlainText asks for the same message again without formatting
	// (Telegram could not parse it).
	AsPlainText bool
}

// MaxRetryAfter caps how long an answer can make the next attempt wait.
const MaxRetryAfter = 10 * time.Minute

// Judge reads a service's answer to one attempt.
func Judge(s notifier.Channel, status int, header http.Header, body []byte, now time.Time) Verdict {
	v := Verdict{RetryAfter: retryAfter(header, now)}
	ok := status >= 200 && status < 300
	switch s.Type {
	case Slack:
		ok = status == http.StatusOK && strings.TrimSpace(string(body)) == "ok"
	case Telegram:
		var tg struct {
			OK          bool   `json:"ok"`
			Description string `json:"description"`
			Parameters  struct {
				RetryAfter int `json:"retry_after"`
			} `json:"parameters"`
		}
		_ = json.Unmarshal(body, &tg)
		ok = status == http.StatusOK && tg.OK
		if tg.Parameters.RetryAfter > 0 {
			v.RetryAfter = seconds(float64(tg.Parameters.RetryAfter))
		}
		if status == http.StatusBadRequest && strings.Contains(tg.Description, "can't parse entities") {
			v.AsPlainText = true
		}
	case PagerDuty:
		ok = status == http.StatusAccepted
	case Discord:
		var d struct {
			RetryAfter float64 `json:"retry_after"`
		}
		if status == http.StatusTooManyRequests && json.Unmarshal(body, &d) == nil && d.RetryAfter > 0 {
			v.RetryAfter = max(v.RetryAfter, seconds(d.RetryAfter))
		}
	}
	v.RetryAfter = min(v.RetryAfter, MaxRetryAfter)
	if ok {
		return Verdict{OK: true}
	}
	v.Reason = fmt.Sprintf("%s answered %d", nameOf(s.Type), status)
	// A service's 4xx (but a rate limit) means the request is wrong and will
	// stay wrong; a generic receiver's may be passing, as the product
	// promises retries on any non-2xx.
	clientError := status >= 400 && status < 500 && status != http.StatusTooManyRequests
	if s.Type != Generic && s.Type != "" && clientError {
		v.Permanent = true
	}
	return v
}

func nameOf(t string) string {
	switch t {
	case Slack:
		return "Slack"
	case Telegram:
		return "Telegram"
	case PagerDuty:
		return "PagerDuty"
	case Discord:
		return "Discord"
	default:
		return "receiver"
	}
}

// seconds converts a wait a service gave in seconds, capped before it could
// overflow a Duration.
func seconds(secs float64) time.Duration {
	if secs >= MaxRetryAfter.Seconds() {
		return MaxRetryAfter
	}
	return time.Duration(secs * float64(time.Second))
}

// retryAfter reads a Retry-After header, in seconds or as an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 {
		return seconds(secs)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
