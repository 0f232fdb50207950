package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/secrets"
	"github.com/barfinex/notifier/sqlstore"
)

func TestRotateSecrets(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldKey, newKey := strings.Repeat("11", 32), strings.Repeat("22", 32)
	k, err := secrets.ParseKey(oldKey)
	require.NoError(t, err)
	ring, err := secrets.NewKeyring(k)
	require.NoError(t, err)
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "notifier.db"), sqlstore.WithKeyring(ring))
	require.NoError(t, err)
	w := &notifier.Webhook{Name: "x", URL: "https://e.com/h", Secret: "s1", Active: true,
		Events: []notifier.EventType{notifier.EventOrderFilled}}
	require.NoError(t, store.CreateWebhook(ctx, w))
	require.NoError(t, store.Close())

	env := map[string]string{"NOTIFIER_DATA_DIR": dir, "NOTIFIER_SECRET_KEY": newKey}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	require.Error(t, run(ctx, []string{"rotate-secrets"}, getenv, &out), "the old key is needed to open")

	env["NOTIFIER_SECRET_KEY_PREVIOUS"] = oldKey
	require.NoError(t, run(ctx, []string{"rotate-secrets"}, getenv, &out))
	require.Contains(t, out.String(), "resealed 1 webhook secrets")

	k2, err := secrets.ParseKey(newKey)
	require.NoError(t, err)
	onlyNew, err := secrets.NewKeyring(k2)
	require.NoError(t, err)
	store, err = sqlstore.OpenSQLite(ctx, filepath.Join(dir, "notifier.db"), sqlstore.WithKeyring(onlyNew))
	require.NoError(t, err)
	defer store.Close()
	got, err := store.Webhook(ctx, w.ID)
	require.NoError(t, err)
	require.Equal(t, "s1", got.Secret)
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"ErrNoTokenOffLoopback", map[string]string{"NOTIFIER_HTTP_ADDR": "0.0.0.0:8080"}},
		{"ErrBadKey", map[string]string{"NOTIFIER_SECRET_KEY": "short"}},
		{"ErrPreviousWithoutKey", map[string]string{"NOTIFIER_SECRET_KEY_PREVIOUS": strings.Repeat("11", 32)}},
		{"ErrAllowedTargets", map[string]string{"NOTIFIER_ALLOWED_TARGETS": "10.0.0.0/99"}},
		{"ErrBool", map[string]string{"NOTIFIER_ALLOW_PRIVATE_URLS": "maybe"}},
		{"ErrDuration", map[string]string{"NOTIFIER_RETRY_INITIAL_INTERVAL": "-1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(func(k string) string { return tc.env[k] })
			require.Error(t, err)
		})
	}
	cfg, err := loadConfig(func(string) string { return "" })
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", cfg.HTTPAddr)
	require.False(t, cfg.AllowPrivate)
	require.Equal(t, "127.0.0.1:7233", cfg.TemporalAddress)
}

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	addr := strings.TrimPrefix(srv.URL, "http://")
	getenv := func(k string) string {
		if k == "NOTIFIER_HTTP_ADDR" {
			return addr
		}
		return ""
	}
	require.NoError(t, run(context.Background(), []string{"healthcheck"}, getenv, io.Discard))
	srv.Close()
	require.Error(t, run(context.Background(), []string{"healthcheck"}, getenv, io.Discard))
}
