// Command notifier runs Barfinex Notifier: the HTTP API, the Temporal worker,
// or both in one process.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "notifier:", err)
		os.Exit(1)
	}
}

const usage = `usage: notifier [command]

commands:
  serve    the API and a worker in one process (default)
  api      the HTTP API only
  worker   the Temporal worker only
  rotate-secrets
           seal every stored webhook secret with NOTIFIER_SECRET_KEY
  healthcheck
           exit 0 when the API at NOTIFIER_HTTP_ADDR answers /healthz
  version  print the version

Configuration comes from NOTIFIER_* environment variables and the Temporal
SDK's TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE; see the README.`

// run runs the command named by args until ctx is done.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	var r roles
	switch cmd {
	case "serve":
		r = roles{api: true, worker: true}
	case "api":
		r = roles{api: true}
	case "worker":
		r = roles{worker: true}
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "rotate-secrets":
		cfg, err := loadConfig(getenv)
		if err != nil {
			return err
		}
		return rotateSecrets(ctx, cfg, stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return errors.New("unknown command " + cmd + "\n" + usage)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg, stdout)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, r, log)
}

func newLogger(cfg *config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("NOTIFIER_LOG_LEVEL: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("NOTIFIER_LOG_FORMAT: want json or text, got %q", cfg.LogFormat)
	}
}
