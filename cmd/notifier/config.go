package main

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/barfinex/notifier/activities"
	"github.com/barfinex/notifier/egress"
	"github.com/barfinex/notifier/secrets"
	"github.com/barfinex/notifier/sqlstore"
	"github.com/barfinex/notifier/worker"
	"github.com/barfinex/notifier/workflows"
)

// config is the service's configuration, read from the environment.
type config struct {
	HTTPAddr string
	// MetricsAddr, when set, is where a process without the API (the
	// worker role) serves /metrics.
	MetricsAddr  string
	DataDir      string
	DatabasePath string
	// DatabaseURL, when set, puts the store in PostgreSQL instead of SQLite.
	DatabaseURL   string
	Pool          sqlstore.PoolConfig
	APIToken      string
	AllowPrivate  bool
	Egress        egress.Policy
	MaxPerHost    int64
	MaxEventBytes int64
	Retry         activities.RetryConfig
	// Keys seals webhook secrets at rest; nil when no key is set.
	Keys *secrets.Keyring
	// WorkflowPollers and ActivityPollers tune the worker.
	WorkflowPollers int64
	ActivityPollers int64
	// WorkflowCacheSize bounds the workflows a worker keeps in memory.
	WorkflowCacheSize int64

	TemporalAddress   string
	TemporalNamespace string
	TaskQueue         string

	LogFormat string
	LogLevel  string
}

// loadConfig reads the configuration from getenv, applying defaults.
func loadConfig(getenv func(string) string) (*config, error) {
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	c := &config{
		HTTPAddr:          env("NOTIFIER_HTTP_ADDR", "127.0.0.1:8080"),
		MetricsAddr:       getenv("NOTIFIER_METRICS_ADDR"),
		DataDir:           env("NOTIFIER_DATA_DIR", "./.data"),
		APIToken:          getenv("NOTIFIER_API_TOKEN"),
		TemporalAddress:   env("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
		TemporalNamespace: env("TEMPORAL_NAMESPACE", "default"),
		TaskQueue:         env("NOTIFIER_TASK_QUEUE", workflows.TaskQueue),
		LogFormat:         env("NOTIFIER_LOG_FORMAT", "json"),
		LogLevel:          env("NOTIFIER_LOG_LEVEL", "info"),
		Retry:             activities.DefaultRetry,
	}
	c.DatabasePath = env("NOTIFIER_DATABASE_PATH", filepath.Join(c.DataDir, "notifier.db"))
	c.DatabaseURL = getenv("NOTIFIER_DATABASE_URL")
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") &&
		!strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		return nil, fmt.Errorf("NOTIFIER_DATABASE_URL: want a postgres:// URL")
	}

	var err error
	if c.AllowPrivate, err = parseBool(getenv, "NOTIFIER_ALLOW_PRIVATE_URLS", false); err != nil {
		return nil, err
	}
	c.Egress.AllowPrivate = c.AllowPrivate
	c.Egress.Allowed, c.Egress.AllowedHosts, err =
		egress.ParseTargets(getenv("NOTIFIER_ALLOWED_TARGETS"))
	if err != nil {
		return nil, fmt.Errorf("NOTIFIER_ALLOWED_TARGETS: %w", err)
	}
	if c.MaxPerHost, err = parseInt(getenv, "NOTIFIER_MAX_IN_FLIGHT_PER_HOST", 16); err != nil {
		return nil, err
	}
	if c.WorkflowPollers, err = parseInt(getenv, "NOTIFIER_WORKFLOW_POLLERS",
		worker.DefaultPollers); err != nil {
		return nil, err
	}
	if c.ActivityPollers, err = parseInt(getenv, "NOTIFIER_ACTIVITY_POLLERS",
		worker.DefaultPollers); err != nil {
		return nil, err
	}
	c.WorkflowCacheSize, err = parseInt(getenv, "NOTIFIER_WORKFLOW_CACHE_SIZE",
		worker.DefaultCacheSize)
	if err != nil {
		return nil, err
	}
	if c.MaxEventBytes, err = parseInt(getenv, "NOTIFIER_MAX_EVENT_BYTES", 256<<10); err != nil {
		return nil, err
	}
	c.Retry.InitialInterval, err = parseDuration(getenv, "NOTIFIER_RETRY_INITIAL_INTERVAL",
		c.Retry.InitialInterval)
	if err != nil {
		return nil, err
	}
	c.Retry.AttemptTimeout, err = parseDuration(getenv, "NOTIFIER_ATTEMPT_TIMEOUT",
		c.Retry.AttemptTimeout)
	if err != nil {
		return nil, err
	}
	maxOpen, err := parseInt(getenv, "NOTIFIER_DATABASE_MAX_CONNS", 10)
	if err != nil {
		return nil, err
	}
	maxIdle, err := parseInt(getenv, "NOTIFIER_DATABASE_MAX_IDLE_CONNS", 5)
	if err != nil {
		return nil, err
	}
	c.Pool = sqlstore.PoolConfig{MaxOpen: int(maxOpen), MaxIdle: int(maxIdle)}
	c.Pool.MaxLifetime, err = parseDuration(getenv, "NOTIFIER_DATABASE_CONN_MAX_LIFETIME",
		30*time.Minute)
	if err != nil {
		return nil, err
	}
	if c.Keys, err = loadKeys(getenv); err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return nil, fmt.Errorf("NOTIFIER_HTTP_ADDR: %w", err)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return nil, fmt.Errorf("NOTIFIER_METRICS_ADDR: %w", err)
		}
	}
	if c.APIToken == "" && !loopback(c.HTTPAddr) {
		return nil, fmt.Errorf("NOTIFIER_API_TOKEN is required when NOTIFIER_HTTP_ADDR (%s) "+
			"is not a loopback address", c.HTTPAddr)
	}
	return c, nil
}

// loadKeys reads NOTIFIER_SECRET_KEY and the comma-separated
// NOTIFIER_SECRET_KEY_PREVIOUS.
func loadKeys(getenv func(string) string) (*secrets.Keyring, error) {
	current := getenv("NOTIFIER_SECRET_KEY")
	previous := getenv("NOTIFIER_SECRET_KEY_PREVIOUS")
	if current == "" {
		if previous != "" {
			return nil, fmt.Errorf("NOTIFIER_SECRET_KEY_PREVIOUS is set without NOTIFIER_SECRET_KEY")
		}
		return nil, nil
	}
	key, err := secrets.ParseKey(current)
	if err != nil {
		return nil, fmt.Errorf("NOTIFIER_SECRET_KEY: %w", err)
	}
	var old [][]byte
	for _, p := range strings.Split(previous, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		k, err := secrets.ParseKey(p)
		if err != nil {
			return nil, fmt.Errorf("NOTIFIER_SECRET_KEY_PREVIOUS: %w", err)
		}
		old = append(old, k)
	}
	return secrets.NewKeyring(key, old...)
}

func parseBool(getenv func(string) string, key string, def bool) (bool, error) {
	v := getenv(key)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: want true or false, got %q", key, v)
	}
	return b, nil
}

func parseInt(getenv func(string) string, key string, def int64) (int64, error) {
	v := getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s: want a positive whole number, got %q", key, v)
	}
	return n, nil
}

func parseDuration(getenv func(string) string, key string,
	def time.Duration) (time.Duration, error) {
	v := getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: want a positive duration like 10s, got %q", key, v)
	}
	return d, nil
}

// loopback reports whether a listen address only accepts local connections.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
