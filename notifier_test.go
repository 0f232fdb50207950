package notifier_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier"
)

// The HMAC-SHA256 vectors of RFC 4231, section 4.
func TestSign_RFC4231(t *testing.T) {
	for _, tc := range []struct{ key, data, want string }{
		{strings.Repeat("0b", 20), hex.EncodeToString([]byte("Hi There")),
			"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{hex.EncodeToString([]byte("Jefe")), hex.EncodeToString([]byte("what do ya want for nothing?")),
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{strings.Repeat("aa", 20), strings.Repeat("dd", 50),
			"773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
	} {
		key, _ := hex.DecodeString(tc.key)
		data, _ := hex.DecodeString(tc.data)
		got := notifier.Sign(string(key), data)
		require.Equal(t, tc.want, got)
		require.True(t, notifier.VerifySignature(string(key), data, got))
	}
}

func TestSign_LowercaseHexOverExactBytes(t *testing.T) {
	body := []byte(`{"a":1}`)
	sig := notifier.Sign("k", body)
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{64}$`), sig)
	require.NotEqual(t, sig, notifier.Sign("k", []byte(`{"a": 1}`)), "one space changes the signature")
	require.False(t, notifier.VerifySignature("other", body, sig))
}

func TestEnvelope_TrickyText(t *testing.T) {
	data := `{"strategy":"momentum-btc","note":"ünïcødé 🚀 <&> / ` + "\u2028" + ` end","score":0.82}`
	ev, err := notifier.NewEvent("", notifier.EventSignalEmitted,
		ptr(time.Date(2026, 3, 27, 12, 0, 0, 123456789, time.FixedZone("x", 3600))), json.RawMessage(data), time.Now())
	require.NoError(t, err)
	body, err := ev.Envelope()
	require.NoError(t, err)

	var got struct {
		ID, Type, Timestamp string
		Data                map[string]any
	}
	require.NoError(t, json.Unmarshal(body, &got))
	require.Equal(t, ev.ID, got.ID)
	require.Equal(t, "signal.emitted", got.Type)
	require.Equal(t, "2026-03-27T11:00:00.123Z", got.Timestamp)
	require.Equal(t, "ünïcødé 🚀 <&> / \u2028 end", got.Data["note"])
	require.Contains(t, string(body), "<&>", "HTML characters are sent as they are")

	// A receiver computes the HMAC over the bytes it received.
	mac := hmac.New(sha256.New, []byte("whsec-Ü-🔑"))
	mac.Write(body)
	require.Equal(t, hex.EncodeToString(mac.Sum(nil)), notifier.Sign("whsec-Ü-🔑", body))

	again, err := ev.Envelope()
	require.NoError(t, err)
	require.Equal(t, body, again, "the envelope is the same bytes every time")
}

func TestNewEvent(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t.Run("OK", func(t *testing.T) {
		ev, err := notifier.NewEvent("", notifier.EventOrderFilled, nil,
			json.RawMessage(` { "symbol" : "ETHUSDT" } `), now)
		require.NoError(t, err)
		require.Regexp(t, `^evt_[a-z2-7]{26}$`, ev.ID)
		require.Equal(t, now, ev.Timestamp)
		require.JSONEq(t, `{"symbol":"ETHUSDT"}`, string(ev.Data))
		require.Equal(t, `{"symbol":"ETHUSDT"}`, string(ev.Data))
	})
	t.Run("OwnID", func(t *testing.T) {
		ev, err := notifier.NewEvent("order-42:filled", notifier.EventOrderFilled, nil, nil, now)
		require.NoError(t, err)
		require.Equal(t, "order-42:filled", ev.ID)
		require.Equal(t, "{}", string(ev.Data))
	})
	for _, tc := range []struct {
		name, id, typ, data, field string
	}{
		{"ErrTypeRequired", "", "", `{}`, "type"},
		{"ErrTypeUnknown", "", "order.cancelled", `{}`, "type"},
		{"ErrDataNotObject", "", "order.filled", `[1,2]`, "data"},
		{"ErrDataString", "", "order.filled", `"x"`, "data"},
		{"ErrDataInvalidUTF8", "", "order.filled", "{\"a\":\"\xff\"}", "data"},
		{"ErrIDBadChars", "evt 1", "order.filled", `{}`, "id"},
		{"ErrIDTooLong", strings.Repeat("a", 129), "order.filled", `{}`, "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := notifier.NewEvent(tc.id, notifier.EventType(tc.typ), nil, json.RawMessage(tc.data), now)
			require.Equal(t, notifier.EINVALID, notifier.ErrorCode(err))
			var e *notifier.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, tc.field, e.Field)
		})
	}
}

func TestNewEvent_Timestamp(t *testing.T) {
	for _, ts := range []string{"9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00+01:00",
		"0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2026-01-01T00:00:00+24:00"} {
		parsed, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue // refused already by the parser
		}
		_, err = notifier.NewEvent("", notifier.EventOrderFilled, &parsed, nil, time.Now())
		var e *notifier.Error
		require.ErrorAs(t, err, &e, ts)
		require.Equal(t, "timestamp", e.Field, ts)
	}
	ok, err := time.Parse(time.RFC3339, "2026-03-27T14:00:00+02:00")
	require.NoError(t, err)
	ev, err := notifier.NewEvent("", notifier.EventOrderFilled, &ok, nil, time.Now())
	require.NoError(t, err)
	require.Equal(t, "2026-03-27T12:00:00Z", ev.Timestamp.Format(time.RFC3339))
}

func TestWebhookValidate(t *testing.T) {
	valid := func() *notifier.Webhook {
		return &notifier.Webhook{Name: " Desk ", URL: "https://hooks.example.com/x",
			Events: []notifier.EventType{"order.filled", "order.filled", "signal.emitted"}}
	}
	t.Run("OK", func(t *testing.T) {
		w := valid()
		require.NoError(t, w.Validate(notifier.URLPolicy{}))
		require.Equal(t, "Desk", w.Name)
		require.Equal(t, []notifier.EventType{"order.filled", "signal.emitted"}, w.Events)
	})
	t.Run("PlainHTTPWhenAllowed", func(t *testing.T) {
		w := valid()
		w.URL = "http://127.0.0.1:9000/hook"
		require.NoError(t, w.Validate(notifier.URLPolicy{AllowHTTP: true}))
	})
	for _, tc := range []struct {
		name  string
		edit  func(*notifier.Webhook)
		field string
	}{
		{"ErrNameRequired", func(w *notifier.Webhook) { w.Name = "  " }, "name"},
		{"ErrNameTooLong", func(w *notifier.Webhook) { w.Name = strings.Repeat("n", 201) }, "name"},
		{"ErrURLRequired", func(w *notifier.Webhook) { w.URL = "" }, "url"},
		{"ErrURLPlainHTTP", func(w *notifier.Webhook) { w.URL = "http://example.com/" }, "url"},
		{"ErrURLRelative", func(w *notifier.Webhook) { w.URL = "/hook" }, "url"},
		{"ErrURLScheme", func(w *notifier.Webhook) { w.URL = "ftp://example.com/" }, "url"},
		{"ErrURLCredentials", func(w *notifier.Webhook) { w.URL = "https://u:p@example.com/" }, "url"},
		{"ErrURLTooLong", func(w *notifier.Webhook) { w.URL = "https://e.com/" + strings.Repeat("a", 2048) }, "url"},
		{"ErrEventsEmpty", func(w *notifier.Webhook) { w.Events = nil }, "events"},
		{"ErrEventsUnknown", func(w *notifier.Webhook) { w.Events = []notifier.EventType{"nope"} }, "events"},
		{"ErrEventsPing", func(w *notifier.Webhook) { w.Events = []notifier.EventType{"ping"} }, "events"},
		{"ErrSecretTooLong", func(w *notifier.Webhook) { w.Secret = strings.Repeat("s", 1025) }, "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := valid()
			tc.edit(w)
			err := w.Validate(notifier.URLPolicy{})
			var e *notifier.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, notifier.EINVALID, e.Code)
			require.Equal(t, tc.field, e.Field)
		})
	}
}

func TestDeliveryID(t *testing.T) {
	a := notifier.DeliveryID("evt_1", "wh_a")
	require.Equal(t, a, notifier.DeliveryID("evt_1", "wh_a"))
	require.NotEqual(t, a, notifier.DeliveryID("evt_1", "wh_b"))
	require.NotEqual(t, a, notifier.DeliveryID("evt_2", "wh_a"))
	require.True(t, notifier.ValidDeliveryID(a))
}

func TestEventTypes_Catalog(t *testing.T) {
	types := notifier.EventTypes()
	require.Len(t, types, 13)
	for _, info := range types {
		require.NotEmpty(t, info.Description, info.Type)
		var schema map[string]any
		require.NoError(t, json.Unmarshal(info.Schema, &schema), info.Type)
		require.Equal(t, "object", schema["type"], info.Type)
	}
	info, ok := notifier.LookupEventType(notifier.EventSignalEmitted)
	require.True(t, ok)
	require.Contains(t, string(info.Schema), `"strategy"`)
}

func ptr[T any](v T) *T { return &v }
