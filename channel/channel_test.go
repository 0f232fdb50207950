package channel_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/channel"
)

// fake is a stand-in for one service's incoming-message API: it checks each
// request the way the service's documentation says it does, and answers as
// the service does.
type fake struct {
	*httptest.Server
	got [][]byte
}

func newFake(t *testing.T, check func(r *http.Request, body []byte) (int, string)) *fake {
	f := &fake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.got = append(f.got, body)
		status, answer := check(r, body)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(f.Close)
	return f
}

func decodeJSON(r *http.Request, body []byte) (map[string]any, bool) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return nil, false
	}
	var m map[string]any
	return m, json.Unmarshal(body, &m) == nil
}

// Slack incoming webhooks: POST /services/T…/B…/secret, JSON with text (or
// blocks), header text plain and at most 150 characters, a section's text
// at most 3000; 200 "ok", or 400 with an error word.
func fakeSlack(t *testing.T) *fake {
	path := regexp.MustCompile(`^/services/T\w+/B\w+/\w+$`)
	return newFake(t, func(r *http.Request, body []byte) (int, string) {
		m, ok := decodeJSON(r, body)
		switch {
		case !path.MatchString(r.URL.Path):
			return 404, "no_service"
		case !ok:
			return 400, "invalid_payload"
		case m["text"] == nil || m["text"] == "":
			return 400, "no_text"
		}
		for _, b := range m["blocks"].([]any) {
			block := b.(map[string]any)
			switch block["type"] {
			case "header":
				txt := block["text"].(map[string]any)
				if txt["type"] != "plain_text" || utf8.RuneCountInString(txt["text"].(string)) > 150 {
					return 400, "invalid_blocks"
				}
			case "section":
				txt := block["text"].(map[string]any)["text"].(string)
				if txt == "" || utf8.RuneCountInString(txt) > 3000 {
					return 400, "invalid_blocks"
				}
			}
		}
		return 200, "ok"
	})
}

// Telegram Bot API sendMessage: POST /bot<token>/sendMessage, chat_id, text
// of 1 to 4096 characters after entities are parsed, HTML that parses.
func fakeTelegram(t *testing.T) *fake {
	path := regexp.MustCompile(`^/bot\d+:[\w-]+/sendMessage$`)
	bad := func(code int, desc string) (int, string) {
		return code, fmt.Sprintf(`{"ok":false,"error_code":%d,"description":%q}`, code, desc)
	}
	return newFake(t, func(r *http.Request, body []byte) (int, string) {
		m, ok := decodeJSON(r, body)
		switch {
		case !path.MatchString(r.URL.Path):
			return 404, `{"ok":false,"error_code":404,"description":"Not Found"}`
		case !ok:
			return bad(400, "Bad Request: message text is empty")
		case m["chat_id"] == nil || m["chat_id"] == "":
			return bad(400, "Bad Request: chat_id is empty")
		}
		text, _ := m["text"].(string)
		if m["parse_mode"] == "HTML" {
			parsed, err := parseTelegramHTML(text)
			if err != nil {
				return bad(400, "Bad Request: can't parse entities: "+err.Error())
			}
			text = parsed
		}
		switch n := utf16Len(text); {
		case n == 0:
			return bad(400, "Bad Request: message text is empty")
		case n > channel.TelegramLimit:
			return bad(400, "Bad Request: message is too long")
		}
		return 200, `{"ok":true,"result":{"message_id":1}}`
	})
}

// utf16Len counts characters the way Telegram and Discord do: in UTF-16
// code units.
func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }

var (
	tag           = regexp.MustCompile(`<(/?)([a-z]+)>`)
	numericEntity = regexp.MustCompile(`^#(\d+|x[0-9a-fA-F]+)$`)
)

// parseTelegramHTML checks tags are known and balanced and entities are
// ones Telegram knows, and returns the text with both removed.
func parseTelegramHTML(s string) (string, error) {
	var stack []string
	for _, m := range tag.FindAllStringSubmatch(s, -1) {
		name := m[2]
		if !strings.Contains(" b i code pre u s a ", " "+name+" ") {
			return "", fmt.Errorf("unsupported start tag %q", name)
		}
		if m[1] == "" {
			stack = append(stack, name)
		} else if len(stack) == 0 || stack[len(stack)-1] != name {
			return "", fmt.Errorf("unmatched end tag %q", name)
		} else {
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return "", fmt.Errorf("unclosed tag %q", stack[len(stack)-1])
	}
	text := tag.ReplaceAllString(s, "")
	if strings.ContainsAny(text, "<>") {
		return "", fmt.Errorf("unescaped angle bracket")
	}
	for i := strings.Index(text, "&"); i >= 0; i = strings.Index(text, "&") {
		// Named: only these four; numeric: any.
		end := strings.Index(text[i:], ";")
		if end < 0 || !(strings.Contains(" amp lt gt quot ", " "+text[i+1:i+end]+" ") ||
			numericEntity.MatchString(text[i+1:i+end])) {
			return "", fmt.Errorf("bad entity at %d", i)
		}
		text = text[:i] + "x" + text[i+end+1:]
	}
	return text, nil
}

// PagerDuty Events API v2: POST /v2/enqueue, a 32-character routing key,
// an action, and for a trigger a payload with summary (≤1024), source and a
// known severity; 202, or 400 "invalid event".
func fakePagerDuty(t *testing.T) *fake {
	return newFake(t, func(r *http.Request, body []byte) (int, string) {
		m, ok := decodeJSON(r, body)
		invalid := `{"status":"invalid event","message":"Event object is invalid","errors":["x"]}`
		if r.URL.Path != "/v2/enqueue" || !ok {
			return 400, invalid
		}
		key, _ := m["routing_key"].(string)
		dedup, _ := m["dedup_key"].(string)
		if len(key) != 32 || len(dedup) > 255 {
			return 400, invalid
		}
		switch m["event_action"] {
		case "resolve", "acknowledge":
			if dedup == "" {
				return 400, invalid
			}
		case "trigger":
			p, _ := m["payload"].(map[string]any)
			summary, _ := p["summary"].(string)
			source, _ := p["source"].(string)
			sev, _ := p["severity"].(string)
			if summary == "" || utf8.RuneCountInString(summary) > 1024 || source == "" ||
				!strings.Contains(" critical error warning info ", " "+sev+" ") {
				return 400, invalid
			}
		default:
			return 400, invalid
		}
		return 202, `{"status":"success","message":"Event processed","dedup_key":"` + dedup + `"}`
	})
}

// Discord webhooks: POST /api/webhooks/<id>/<token>?wait=true, content of 1
// to 2000 characters; 200 with the message, or 400 "Cannot send an empty
// message".
func fakeDiscord(t *testing.T) *fake {
	path := regexp.MustCompile(`^/api/webhooks/\d+/[\w-]+$`)
	return newFake(t, func(r *http.Request, body []byte) (int, string) {
		m, ok := decodeJSON(r, body)
		content, _ := m["content"].(string)
		switch {
		case !path.MatchString(r.URL.Path):
			return 404, `{"message":"Unknown Webhook","code":10015}`
		case !ok || content == "":
			return 400, `{"message":"Cannot send an empty message","code":50006}`
		case utf16Len(content) > 2000:
			return 400, `{"message":"Invalid Form Body","code":50035}`
		case r.URL.Query().Get("wait") != "true":
			return 204, ""
		}
		return 200, `{"id":"1","content":"x"}`
	})
}

// sample gives every event type data its schema accepts.
var sample = map[notifier.EventType]string{
	notifier.EventSignalEmitted:     `{"strategy":"momentum-btc","symbol":"BTCUSDT","direction":"LONG","score":0.82}`,
	notifier.EventDecisionMade:      `{"decision":"execute","symbol":"BTCUSDT","reason":"score <0.9> & rising"}`,
	notifier.EventRiskBlocked:       `{"policy":"max-exposure","reason":"exposure 12% > 10%"}`,
	notifier.EventOrderPlaced:       `{"symbol":"ETHUSDT","side":"BUY","qty":"1.5","price":"3120.10"}`,
	notifier.EventOrderFilled:       `{"symbol":"ETHUSDT","side":"SELL","qty":2,"price":3121.5}`,
	notifier.EventServiceUp:         `{"service":"inspector","down_since":"2026-03-27T12:00:00.000Z"}`,
	notifier.EventServiceDown:       `{"service":"inspector","error":"connection refused","since":"2026-03-27T12:00:00.000Z"}`,
	notifier.EventDeploymentCreated: `{"deployment_id":"dep-1","service":"detector","config":{"a":1}}`,
	notifier.EventDeploymentUpdated: `{"deployment_id":"dep-1","changes":{"a":2}}`,
	notifier.EventDeploymentDeleted: `{"deployment_id":"dep-1"}`,
	notifier.EventAlertTriggered: `{"rule":"drawdown_threshold","rule_id":"rule_1","rule_name":"DD","threshold":5.0,` +
		`"current_value":5.3,"message":"Portfolio drawdown exceeded 5.0% (current: 5.3%)","since":"2026-03-27T12:05:00.000Z"}`,
	notifier.EventAlertResolved: `{"rule":"drawdown_threshold","rule_id":"rule_1","rule_name":"DD","threshold":5.0,` +
		`"current_value":4.1,"message":"Portfolio drawdown back under 5.0% (current: 4.1%)","since":"2026-03-27T12:05:00.000Z"}`,
	notifier.EventPing: `{"webhook_id":"wh_1","message":"Test ping from Barfinex Notifier"}`,
}

func envelope(t *testing.T, typ notifier.EventType, data string) []byte {
	t.Helper()
	ts := time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)
	ev, err := notifier.NewEvent("", typ, &ts, json.RawMessage(data), time.Now())
	require.NoError(t, err)
	body, err := ev.Envelope()
	require.NoError(t, err)
	return body
}

func send(t *testing.T, ch notifier.Channel, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := channel.Render(ch, url, body)
	require.NoError(t, err)
	resp, err := http.Post(req.URL, "application/json", bytes.NewReader(req.Body))
	require.NoError(t, err)
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp, answer
}

func TestEveryEventThroughEveryChannel(t *testing.T) {
	slack, tg, pd, discord := fakeSlack(t), fakeTelegram(t), fakePagerDuty(t), fakeDiscord(t)
	routingKey := strings.Repeat("R", 32)
	for _, tc := range []struct {
		ch  notifier.Channel
		url string
	}{
		{notifier.Channel{Type: channel.Slack}, slack.URL + "/services/T000/B000/XXXX"},
		{notifier.Channel{Type: channel.Telegram, ChatID: "-100123", ParseMode: "HTML"}, tg.URL + "/bot123:ABC-def/sendMessage"},
		{notifier.Channel{Type: channel.Telegram, ChatID: "-100123"}, tg.URL + "/bot123:ABC-def/sendMessage"},
		{notifier.Channel{Type: channel.PagerDuty, RoutingKey: routingKey, Severity: "error", Source: "barfinex"}, pd.URL + "/v2/enqueue"},
		{notifier.Channel{Type: channel.Discord}, discord.URL + "/api/webhooks/123/tok-en"},
	} {
		for _, info := range notifier.EventTypes() {
			t.Run(tc.ch.Type+"/"+string(info.Type), func(t *testing.T) {
				data, ok := sample[info.Type]
				require.True(t, ok, "no sample for %s", info.Type)
				resp, answer := send(t, tc.ch, tc.url, envelope(t, info.Type, data))
				v := channel.Judge(tc.ch, resp.StatusCode, resp.Header, answer, time.Now())
				require.True(t, v.OK, "%s refused %s: %d %s", tc.ch.Type, info.Type, resp.StatusCode, answer)
			})
		}
	}
	last := discord.got[len(discord.got)-1]
	require.Contains(t, string(last), "Test ping")
}

func TestTelegram_EscapingAndLimits(t *testing.T) {
	tg := fakeTelegram(t)
	ch := notifier.Channel{Type: channel.Telegram, ChatID: "42", ParseMode: "HTML"}
	url := tg.URL + "/bot1:x/sendMessage"
	special := `<b>bold?</b> & "quotes" 'single' <script>alert(1)</script> &amp; ünïcødé 🚀 _*[]()~` + "`>#+-=|{}.!"

	t.Run("EverySpecialCharacter", func(t *testing.T) {
		data, _ := json.Marshal(map[string]any{"strategy": special, "symbol": special, "direction": "LONG"})
		resp, answer := send(t, ch, url, envelope(t, notifier.EventSignalEmitted, string(data)))
		require.Equal(t, 200, resp.StatusCode, string(answer))
		var sent map[string]any
		require.NoError(t, json.Unmarshal(tg.got[len(tg.got)-1], &sent))
		text, err := parseTelegramHTML(sent["text"].(string))
		require.NoError(t, err)
		require.Contains(t, html.UnescapeString(sent["text"].(string)), special, "the text arrives as written")
		require.NotEmpty(t, text)
	})

	for _, filler := range []string{strings.Repeat("é🚀&<", 3000), strings.Repeat("a", 9000)} {
		t.Run(fmt.Sprintf("Truncated%d", len(filler)), func(t *testing.T) {
			data, _ := json.Marshal(map[string]any{"strategy": filler, "symbol": filler, "direction": "SHORT",
				"note": filler})
			resp, answer := send(t, ch, url, envelope(t, notifier.EventSignalEmitted, string(data)))
			require.Equal(t, 200, resp.StatusCode, string(answer))
			var sent map[string]any
			require.NoError(t, json.Unmarshal(tg.got[len(tg.got)-1], &sent))
			text := sent["text"].(string)
			require.True(t, utf8.ValidString(text))
			require.LessOrEqual(t, utf16Len(text), channel.TelegramLimit)
			_, err := parseTelegramHTML(text)
			require.NoError(t, err, "no tag or entity is cut")
		})
	}

	t.Run("PlainTextAfterParseError", func(t *testing.T) {
		v := channel.Judge(ch, 400, http.Header{}, []byte(
			`{"ok":false,"error_code":400,"description":"Bad Request: can't parse entities: x"}`), time.Now())
		require.True(t, v.AsPlainText)
		plain := ch
		plain.ParseMode = ""
		req, err := channel.Render(plain, url, envelope(t, notifier.EventSignalEmitted,
			`{"strategy":"<x>","symbol":"A","direction":"LONG"}`))
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(req.Body, &m))
		require.NotContains(t, m, "parse_mode")
		require.Contains(t, m["text"], "<x>", "plain text goes as it is")
	})
}

func TestPagerDuty_IncidentPerEpisode(t *testing.T) {
	ch := notifier.Channel{Type: channel.PagerDuty, RoutingKey: strings.Repeat("k", 32), Severity: "critical", Source: "s"}
	dedup := func(typ notifier.EventType, since string) (string, string) {
		data := `{"rule":"no_signals","rule_id":"rule_9","threshold":15,"current_value":16,` +
			`"message":"m","strategy":"momentum","since":"` + since + `"}`
		req, err := channel.Render(ch, "https://events.pagerduty.com/v2/enqueue", envelope(t, typ, data))
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(req.Body, &m))
		return m["dedup_key"].(string), m["event_action"].(string)
	}
	k1, a1 := dedup(notifier.EventAlertTriggered, "2026-03-27T12:00:00.000Z")
	k2, a2 := dedup(notifier.EventAlertResolved, "2026-03-27T12:00:00.000Z")
	k3, _ := dedup(notifier.EventAlertTriggered, "2026-03-27T13:30:00.000Z")
	require.Equal(t, "trigger", a1)
	require.Equal(t, "resolve", a2)
	require.Equal(t, k1, k2, "the resolve closes the incident the trigger opened")
	require.NotEqual(t, k1, k3, "a second episode opens a second incident")
}

func TestJudge(t *testing.T) {
	now := time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC)
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	generic := notifier.Channel{Type: channel.Generic}
	slack := notifier.Channel{Type: channel.Slack}
	for _, tc := range []struct {
		name   string
		ch     notifier.Channel
		status int
		header http.Header
		body   string
		want   channel.Verdict
	}{
		{"Generic2xx", generic, 204, nil, "", channel.Verdict{OK: true}},
		{"Generic4xxIsRetried", generic, 404, nil, "", channel.Verdict{Reason: "receiver answered 404"}},
		{"RetryAfterSeconds", generic, 503, h("Retry-After", "20"), "", channel.Verdict{
			RetryAfter: 20 * time.Second, Reason: "receiver answered 503"}},
		{"RetryAfterDate", generic, 429, h("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)), "",
			channel.Verdict{RetryAfter: 90 * time.Second, Reason: "receiver answered 429"}},
		{"RetryAfterCapped", generic, 429, h("Retry-After", "86400"), "", channel.Verdict{
			RetryAfter: channel.MaxRetryAfter, Reason: "receiver answered 429"}},
		{"SlackOK", slack, 200, nil, "ok", channel.Verdict{OK: true}},
		{"SlackNotOK", slack, 200, nil, "something else", channel.Verdict{Reason: "Slack answered 200"}},
		{"SlackNoTextIsPermanent", slack, 400, nil, "no_text", channel.Verdict{Permanent: true, Reason: "Slack answered 400"}},
		{"SlackRateLimit", slack, 429, h("Retry-After", "30"), "", channel.Verdict{RetryAfter: 30 * time.Second, Reason: "Slack answered 429"}},
		{"TelegramOKFalse", notifier.Channel{Type: channel.Telegram}, 200, nil, `{"ok":false}`,
			channel.Verdict{Reason: "Telegram answered 200"}},
		{"TelegramRetryAfter", notifier.Channel{Type: channel.Telegram}, 429, nil,
			`{"ok":false,"error_code":429,"parameters":{"retry_after":7}}`,
			channel.Verdict{RetryAfter: 7 * time.Second, Reason: "Telegram answered 429"}},
		{"PagerDuty202", notifier.Channel{Type: channel.PagerDuty}, 202, nil, "", channel.Verdict{OK: true}},
		{"PagerDuty200IsNot", notifier.Channel{Type: channel.PagerDuty}, 200, nil, "", channel.Verdict{Reason: "PagerDuty answered 200"}},
		{"DiscordRateLimit", notifier.Channel{Type: channel.Discord}, 429, nil, `{"retry_after":1.5}`,
			channel.Verdict{RetryAfter: 1500 * time.Millisecond, Reason: "Discord answered 429"}},
		{"Discord5xx", notifier.Channel{Type: channel.Discord}, 502, nil, "", channel.Verdict{Reason: "Discord answered 502"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, channel.Judge(tc.ch, tc.status, tc.header, []byte(tc.body), now))
		})
	}
}

func TestResolve(t *testing.T) {
	for url, want := range map[string]string{
		"https://hooks.slack.com/services/T1/B1/x":                   channel.Slack,
		"https://api.telegram.org/bot1:x/sendMessage?chat_id=42":     channel.Telegram,
		"https://events.pagerduty.com/v2/enqueue?routing_key=abc":    channel.PagerDuty,
		"https://events.eu.pagerduty.com/v2/enqueue?routing_key=abc": channel.PagerDuty,
		"https://discord.com/api/webhooks/1/tok":                     channel.Discord,
		"https://discordapp.com/api/webhooks/1/tok":                  channel.Discord,
		"https://hooks.example.com/barfinex":                         channel.Generic,
		"https://discord.com/channels/1":                             channel.Generic,
	} {
		got, err := channel.Resolve(notifier.Channel{Type: channel.Auto}, url)
		require.NoError(t, err, url)
		require.Equal(t, want, got.Type, url)
	}
	tg, err := channel.Resolve(notifier.Channel{}, "https://api.telegram.org/bot1:x/sendMessage?chat_id=42")
	require.NoError(t, err)
	require.Equal(t, "42", tg.ChatID)
	pd, err := channel.Resolve(notifier.Channel{Type: "pagerduty"}, "https://events.pagerduty.com/v2/enqueue?routing_key=rk")
	require.NoError(t, err)
	require.Equal(t, "rk", pd.RoutingKey)
	require.Equal(t, "error", pd.Severity)
	require.Equal(t, "…", channel.Masked(pd).RoutingKey[:len("…")])

	for _, tc := range []struct {
		ch         notifier.Channel
		url, field string
	}{
		{notifier.Channel{Type: "pagerduty"}, "https://events.pagerduty.com/v2/enqueue", "channel.routing_key"},
		{notifier.Channel{}, "https://api.telegram.org/bot1:x/sendMessage", "channel.chat_id"},
		{notifier.Channel{Type: "pagerduty", RoutingKey: "k", Severity: "loud"}, "https://e.com/", "channel.severity"},
		{notifier.Channel{Type: "sms"}, "https://e.com/", "channel.type"},
		{notifier.Channel{Type: "telegram", ChatID: "1", ParseMode: "MarkdownV2"}, "https://api.telegram.org/bot1:x/sendMessage", "channel.parse_mode"},
	} {
		_, err := channel.Resolve(tc.ch, tc.url)
		var e *notifier.Error
		require.ErrorAs(t, err, &e, tc.url)
		require.Equal(t, tc.field, e.Field)
	}
	require.NotContains(t, channel.MaskURL(notifier.Channel{Type: channel.Slack},
		"https://hooks.slack.com/services/T1234/B5678/secretsecret"), "secretsecret")
	require.NotContains(t, channel.MaskURL(notifier.Channel{Type: channel.Telegram},
		"https://api.telegram.org/bot12345:SECRETTOKEN/sendMessage"), "SECRETTOKEN")
}

func TestForNewURL(t *testing.T) {
	auto, err := channel.Resolve(notifier.Channel{}, "https://events.pagerduty.com/v2/enqueue?routing_key=OLDKEY")
	require.NoError(t, err)
	require.True(t, auto.Auto)

	// A channel chosen by the URL is chosen again: the key goes nowhere else.
	moved, err := channel.Resolve(channel.ForNewURL(auto, "https://hooks.example.com/x"), "https://hooks.example.com/x")
	require.NoError(t, err)
	require.Equal(t, channel.Generic, moved.Type)
	require.Empty(t, moved.RoutingKey)

	// A new key in the new URL replaces the old one.
	rekeyed, err := channel.Resolve(channel.ForNewURL(auto, "https://events.pagerduty.com/v2/enqueue?routing_key=NEWKEY"),
		"https://events.pagerduty.com/v2/enqueue?routing_key=NEWKEY")
	require.NoError(t, err)
	require.Equal(t, "NEWKEY", rekeyed.RoutingKey)

	explicit := notifier.Channel{Type: channel.Telegram, ChatID: "111"}
	next := channel.ForNewURL(explicit, "https://api.telegram.org/bot1:x/sendMessage?chat_id=222")
	got, err := channel.Resolve(next, "https://api.telegram.org/bot1:x/sendMessage?chat_id=222")
	require.NoError(t, err)
	require.Equal(t, "222", got.ChatID)

	require.Contains(t, channel.MaskBody(rekeyed, `{"routing_key":"NEWKEY"}`), `"…WKEY"`)
	require.NotContains(t, channel.MaskBody(rekeyed, `{"routing_key":"NEWKEY"}`), "NEWKEY\"")

	for url, want := range map[string]string{
		"https://hooks.slack.com./services/T1/B1/x":  channel.Slack,
		"https://discord.com/api/v10/webhooks/1/tok": channel.Discord,
	} {
		got, err := channel.Resolve(notifier.Channel{}, url)
		require.NoError(t, err)
		require.Equal(t, want, got.Type, url)
	}
}

func TestRetryAfterOverflowIsCapped(t *testing.T) {
	d := notifier.Channel{Type: channel.Discord}
	v := channel.Judge(d, 429, http.Header{"Retry-After": {"1e30"}}, []byte(`{"retry_after":1e30}`), time.Now())
	require.Equal(t, channel.MaxRetryAfter, v.RetryAfter)
}

func TestDiscordMentionsSuppressed(t *testing.T) {
	req, err := channel.Render(notifier.Channel{Type: channel.Discord}, "https://discord.com/api/webhooks/1/t",
		envelope(t, notifier.EventSignalEmitted, `{"strategy":"@everyone","symbol":"A","direction":"LONG"}`))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(req.Body, &m))
	require.Equal(t, map[string]any{"parse": []any{}}, m["allowed_mentions"])
}
