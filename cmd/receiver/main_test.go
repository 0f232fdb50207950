package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier"
)

func TestHandler(t *testing.T) {
	var out strings.Builder
	h := newHandler("s3cret", &out)
	body := `{"id":"evt_1","type":"order.filled","timestamp":"2026-03-27T12:00:00.000Z","data":{}}`
	send := func(sig string) {
		req := httptest.NewRequest("POST", "/hook", strings.NewReader(body))
		req.Header.Set("X-Barfinex-Event-Id", "evt_1")
		req.Header.Set("X-Barfinex-Signature", sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code)
	}

	send(notifier.Sign("s3cret", []byte(body)))
	require.Contains(t, out.String(), "signature valid\n")
	out.Reset()
	send(notifier.Sign("other", []byte(body)))
	require.Contains(t, out.String(), "signature INVALID, duplicate")
}
