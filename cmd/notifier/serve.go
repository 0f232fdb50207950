package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"golang.org/x/sync/errgroup"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/apiserver"
	"github.com/barfinex/notifier/metrics"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/worker"
)

type roles struct{ api, worker bool }

func versionString() string { return "notifier " + notifier.Version }

// serve runs the given roles until ctx is done, then shuts them down.
func serve(ctx context.Context, cfg *config, r roles, log *slog.Logger) error {
	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()

	tc, err := dialTemporal(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer tc.Close()

	// The listen addresses are taken first: one that is taken or wrong
	// stops the process before its worker starts.
	var apiLn, metricsLn net.Listener
	if r.api {
		if apiLn, err = listen("NOTIFIER_HTTP_ADDR", cfg.HTTPAddr); err != nil {
			return err
		}
		defer apiLn.Close()
	}
	if !r.api && cfg.MetricsAddr != "" {
		if metricsLn, err = listen("NOTIFIER_METRICS_ADDR", cfg.MetricsAddr); err != nil {
			return err
		}
		defer metricsLn.Close()
	}

	g, ctx := errgroup.WithContext(ctx)
	if r.worker {
		if err := worker.EnsureSearchAttributes(ctx, tc, cfg.TemporalNamespace); err != nil {
			log.Warn("search attributes not registered; register them on the namespace", "err", err)
		}
		acts := &activities.Activities{
			Store: store,
			Sender: activities.NewSender(activities.SenderOptions{
				Timeout:    cfg.Retry.AttemptTimeout,
				Policy:     cfg.Egress,
				MaxPerHost: int(cfg.MaxPerHost),
			}),
			Retry: cfg.Retry,
		}
		worker.SetCacheSize(int(cfg.WorkflowCacheSize))
		w := worker.New(tc, cfg.TaskQueue, acts, worker.Options{
			WorkflowPollers: int(cfg.WorkflowPollers),
			ActivityPollers: int(cfg.ActivityPollers),
		})
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		defer w.Stop()
		log.Info("worker started", "temporal_address", cfg.TemporalAddress,
			"namespace", cfg.TemporalNamespace, "task_queue", cfg.TaskQueue)
		if err := worker.EnsureWatchers(ctx, tc, store, cfg.TaskQueue); err != nil {
			log.Error("start alert rules and service monitors", "err", err)
		}
	}
	if r.api {
		api, err := apiserver.New(store, tc, apiserver.Config{
			Token:         cfg.APIToken,
			URLPolicy:     notifier.URLPolicy{AllowHTTP: cfg.AllowPrivate},
			Egress:        cfg.Egress,
			MaxEventBytes: cfg.MaxEventBytes,
			TaskQueue:     cfg.TaskQueue,
			Retry:         cfg.Retry,
		}, log)
		if err != nil {
			return err
		}
		if cfg.APIToken == "" {
			log.Warn("NOTIFIER_API_TOKEN is not set: the API accepts every request on loopback")
		}
		g.Go(func() error { return serveHTTP(ctx, apiLn, api.Handler(), log) })
	}
	if metricsLn != nil {
		// A worker alone has no API: its metrics (attempts, deliveries,
		// the SDK's worker metrics) are served on their own address.
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.Handler())
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		})
		g.Go(func() error { return serveHTTP(ctx, metricsLn, mux, log) })
	}
	g.Go(func() error { <-ctx.Done(); return nil })
	return g.Wait()
}

func openStore(ctx context.Context, cfg *config) (*sqlstore.Store, error) {
	if cfg.DatabaseURL != "" {
		return sqlstore.OpenPostgres(ctx, cfg.DatabaseURL, cfg.Pool, sqlstore.WithKeyring(cfg.Keys))
	}
	if err := os.MkdirAll(filepath.Dir(cfg.DatabasePath), 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	return sqlstore.OpenSQLite(ctx, cfg.DatabasePath, sqlstore.WithKeyring(cfg.Keys))
}

// rotateSecrets seals every stored webhook secret with the current key.
func rotateSecrets(ctx context.Context, cfg *config, stdout io.Writer) error {
	if cfg.Keys == nil {
		return errors.New("rotate-secrets: set NOTIFIER_SECRET_KEY to the key to seal with, " +
			"and NOTIFIER_SECRET_KEY_PREVIOUS to the key or keys it replaces")
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	n, err := store.ResealSecrets(ctx)
	if err != nil {
		return fmt.Errorf("rotate-secrets: %w", err)
	}
	fmt.Fprintf(stdout, "resealed %d webhook secrets with the current key\n", n)
	return nil
}

// healthcheck asks the local API whether it is up, for container health
// checks on images that have no curl.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	addr := getenv("NOTIFIER_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("NOTIFIER_HTTP_ADDR: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %d", resp.StatusCode)
	}
	return nil
}

// listen takes the address that the variable name sets.
func listen(name, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%s: %w", name, addr, err)
	}
	return ln, nil
}

func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down api: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// dialTemporal connects to Temporal, waiting for it while it starts.
func dialTemporal(ctx context.Context, cfg *config, log *slog.Logger) (client.Client, error) {
	opts := client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    sdklog.NewStructuredLogger(log),
		// The SDK's client and worker metrics, served with the notifier's.
		MetricsHandler: metrics.TemporalHandler,
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := client.DialContext(ctx, opts)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("connect to temporal at %s: %w", cfg.TemporalAddress, err)
		}
		log.Warn("waiting for temporal", "temporal_address", cfg.TemporalAddress, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}
