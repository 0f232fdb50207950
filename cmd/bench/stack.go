package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/barfinex/notifier/workflows"
)

// stack is what the benchmark runs against: a Temporal dev server with its
// database on disk, and the notifier as `notifier serve` runs it.
type stack struct {
	root, dir string
	ps        *procs
	temporal  *proc
	notifier  *proc
	address   string
	api       string
	token     string
	taskQueue string
	tc        client.Client
	http      *http.Client
	notifEnv  []string
}

func startStack(ctx context.Context, ps *procs, dir string, o *options,
	mode string) (*stack, error) {
	r, err := root()
	if err != nil {
		return nil, err
	}
	s := &stack{root: r, dir: dir, ps: ps, token: "bench-token", taskQueue: workflows.TaskQueue,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}}

	// The dev server as `make run` starts it: SQLite on disk in WAL mode.
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	s.address = "127.0.0.1:" + strconv.Itoa(ports[0])
	args := []string{"server", "start-dev", "--ip", "127.0.0.1",
		"--port", strconv.Itoa(ports[0]), "--http-port", strconv.Itoa(ports[1]), "--headless",
		"--db-filename", filepath.Join(dir, "temporal.db"),
		"--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
		"--log-level", "warn"}
	for _, k := range workflows.SearchAttributeKeys {
		args = append(args, "--search-attribute", k.GetName()+"=Keyword")
	}
	if s.temporal, err = ps.start(dir, "temporal", filepath.Join(r, "bin", "temporal"), nil,
		args...); err != nil {
		return nil, err
	}
	if s.tc, err = dial(ctx, s.address, s.temporal); err != nil {
		return nil, err
	}

	s.api = "http://127.0.0.1:" + strconv.Itoa(ports[2])
	s.notifEnv = []string{
		"NOTIFIER_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(ports[2]),
		"NOTIFIER_DATA_DIR=" + filepath.Join(dir, "notifier"),
		"NOTIFIER_API_TOKEN=" + s.token,
		"NOTIFIER_ALLOW_PRIVATE_URLS=true",
		"NOTIFIER_LOG_LEVEL=warn",
		"TEMPORAL_ADDRESS=" + s.address,
		"TEMPORAL_NAMESPACE=default",
	}
	if mode == "backlog" {
		// Every delivery waits in backoff at once: the first retry is far off.
		s.notifEnv = append(s.notifEnv, "NOTIFIER_RETRY_INITIAL_INTERVAL=30m")
	}
	bin := filepath.Join(r, "bin", "notifier")
	if o.notifier != "" {
		bin = o.notifier
	}
	s.notifier, err = ps.start(dir, "notifier", bin, s.notifEnv, "serve")
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, s.api+"/readyz", s.notifier, 2*time.Minute); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *stack) close() { s.tc.Close() }

// dial connects to the dev server once it answers.
func dial(ctx context.Context, address string, p *proc) (client.Client, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := client.DialContext(ctx, client.Options{HostPort: address,
			Logger: sdklog.NewStructuredLogger(discardLogger())})
		if err == nil {
			return c, nil
		}
		if p.exited() {
			return nil, fmt.Errorf("the Temporal dev server exited; see %s", p.log)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("connect to temporal at %s: %w", address, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// call sends a request to the notifier's API and decodes its answer.
func (s *stack) call(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.api+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w: %s", method, path, err, raw)
		}
	}
	return resp.StatusCode, nil
}

// createWebhook subscribes a receiver to an event type.
func (s *stack) createWebhook(ctx context.Context, url, typ string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	code, err := s.call(ctx, "POST", "/v1/webhooks", map[string]any{
		"name": "bench", "url": url, "events": []string{typ}, "secret": "bench-secret",
	}, &out)
	if err != nil {
		return "", err
	}
	if code != http.StatusCreated {
		return "", fmt.Errorf("create webhook: status %d", code)
	}
	return out.ID, nil
}

// publish publishes an event with the given id.
func (s *stack) publish(ctx context.Context, id, typ string, n int) error {
	code, err := s.call(ctx, "POST", "/v1/events", map[string]any{
		"id": id, "type": typ, "data": map[string]any{"symbol": "BTCUSDT", "qty": n},
	}, nil)
	if err != nil {
		return err
	}
	if code != http.StatusAccepted {
		return fmt.Errorf("publish %s: status %d", id, code)
	}
	return nil
}
