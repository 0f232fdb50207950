// Package testenv gives tests the real parts they run against: a Temporal
// dev server built from the pinned CLI, and HTTP receivers that record what
// they are sent.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/barfinex/notifier/workflows"
)

// TemporalCLI returns the path of the pinned Temporal CLI: the one named by
// NOTIFIER_TEST_TEMPORAL_CLI (make test sets it), else bin/temporal at the
// module's root.
func TemporalCLI() (string, error) {
	if p := os.Getenv("NOTIFIER_TEST_TEMPORAL_CLI"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", "temporal")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("no Temporal CLI at %s: run `make tools` or `make test`", p)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// StartDevServer starts a Temporal dev server on free local ports, with the
// notifier's search attributes registered. Its state lives in memory.
func StartDevServer(ctx context.Context) (*testsuite.DevServer, error) {
	cli, err := TemporalCLI()
	if err != nil {
		return nil, err
	}
	attrs := make([]string, 0, 2*len(workflows.SearchAttributeKeys))
	for _, k := range workflows.SearchAttributeKeys {
		attrs = append(attrs, "--search-attribute", k.GetName()+"=Keyword")
	}
	return testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  cli,
		ClientOptions: &client.Options{Logger: quietLogger{}},
		LogLevel:      "error",
		ExtraArgs:     attrs,
		Stdout:        io.Discard,
		Stderr:        io.Discard,
	})
}

// PostgresURL returns the URL of a new, empty schema in the PostgreSQL that
// NOTIFIER_TEST_POSTGRES_URL names, dropped when the test ends. It skips the
// test when that variable is not set.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("NOTIFIER_TEST_POSTGRES_URL")
	if base == "" {
		tb.Skip("NOTIFIER_TEST_POSTGRES_URL is not set")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	exec := func(stmt string) error {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec(stmt)
		return err
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		tb.Fatalf("create test schema: %v", err)
	}
	tb.Cleanup(func() { _ = exec("DROP SCHEMA " + schema + " CASCADE") })
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("NOTIFIER_TEST_POSTGRES_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// MainWithDevServer runs a test package's tests with a dev server started
// for them, handed to use before they run, and stops it after.
func MainWithDevServer(m *testing.M, use func(*testsuite.DevServer)) int {
	srv, err := StartDevServer(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "start temporal dev server:", err)
		return 1
	}
	defer srv.Stop()
	use(srv)
	return m.Run()
}

// Request is one request a Receiver got.
type Request struct {
	At     time.Time
	Header http.Header
	Body   []byte
	Path   string
}

// Receiver is a webhook receiver on a local port. It answers each request
// with the next status of its script, the last one repeating.
type Receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	offset   int // requests answered before the current script
	requests []Request
	changed  chan struct{}
}

// NewReceiver starts a receiver that answers with the given statuses in
// turn (200 when none are given). It stops when the test ends.
func NewReceiver(tb testing.TB, statuses ...int) *Receiver {
	tb.Helper()
	if len(statuses) == 0 {
		statuses = []int{http.StatusOK}
	}
	r := &Receiver{statuses: statuses, changed: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	tb.Cleanup(r.Close)
	return r
}

// URL returns the receiver's webhook URL.
func (r *Receiver) URL() string { return r.Server.URL + "/hook" }

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	n := len(r.requests)
	r.requests = append(r.requests, Request{
		At: time.Now(), Header: req.Header.Clone(), Body: body, Path: req.URL.Path,
	})
	status := r.statuses[min(n-r.offset, len(r.statuses)-1)]
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"received":%d}`, n+1)
}

// Answer replaces the receiver's script: the next requests get these
// statuses in turn, the last one repeating.
func (r *Receiver) Answer(statuses ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses, r.offset = statuses, len(r.requests)
}

// Requests returns the requests received so far.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// WaitFor waits until the receiver has received at least n requests whose
// header X-Barfinex-Event-Id is eventID ("" for any), and returns them. It
// fails the test after timeout.
func (r *Receiver) WaitFor(tb testing.TB, eventID string, n int, timeout time.Duration) []Request {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		var got []Request
		for _, req := range r.requests {
			if eventID == "" || req.Header.Get("X-Barfinex-Event-Id") == eventID {
				got = append(got, req)
			}
		}
		changed := r.changed
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			tb.Fatalf("receiver got %d of %d requests for event %q within %s", len(got), n, eventID, timeout)
			return nil
		}
	}
}

// SyncBuffer is a buffer that goroutines may write to at once, for logs.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// quietLogger drops the SDK client's logs, which would drown test output.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

// DiskDevServer is a Temporal dev server run as a process of its own, with
// its state in a database file and fixed ports, so that it can be stopped
// and started again as the same server: a restart loses nothing.
type DiskDevServer struct {
	cli    string
	dbFile string
	ports  [3]int // frontend gRPC, HTTP API, metrics
	log    *os.File
	cmd    *exec.Cmd
	done   chan error
}

// StartDiskDevServer starts a dev server on free local ports whose database
// is a file in a temporary directory, and stops it when the test ends.
func StartDiskDevServer(tb testing.TB) *DiskDevServer {
	tb.Helper()
	cli, err := TemporalCLI()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	log, err := os.Create(filepath.Join(dir, "temporal.log"))
	if err != nil {
		tb.Fatal(err)
	}
	s := &DiskDevServer{cli: cli, dbFile: filepath.Join(dir, "temporal.db"), log: log}
	for i := range s.ports {
		s.ports[i] = freePort(tb)
	}
	tb.Cleanup(func() {
		s.Stop(tb)
		log.Close()
	})
	s.Start(tb)
	return s
}

// FrontendHostPort returns the address of the server's gRPC frontend.
func (s *DiskDevServer) FrontendHostPort() string {
	return fmt.Sprintf("127.0.0.1:%d", s.ports[0])
}

// Start starts the server (again) and waits until it answers.
func (s *DiskDevServer) Start(tb testing.TB) {
	tb.Helper()
	args := []string{"server", "start-dev", "--headless", "--ip", "127.0.0.1",
		"--port", strconv.Itoa(s.ports[0]), "--http-port", strconv.Itoa(s.ports[1]),
		"--metrics-port", strconv.Itoa(s.ports[2]), "--db-filename", s.dbFile,
		"--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
		"--log-level", "warn"}
	for _, k := range workflows.SearchAttributeKeys {
		args = append(args, "--search-attribute", k.GetName()+"=Keyword")
	}
	s.cmd = exec.Command(s.cli, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	DieWithParent(s.cmd)
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start temporal dev server: %v", err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()

	deadline := time.Now().Add(time.Minute)
	for {
		if s.healthy() {
			return
		}
		select {
		case err := <-s.done:
			s.cmd = nil
			tb.Fatalf("temporal dev server exited: %v (log: %s)", err, s.log.Name())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("temporal dev server did not answer within a minute (log: %s)", s.log.Name())
		}
	}
}

func (s *DiskDevServer) healthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{
		HostPort: s.FrontendHostPort(), Logger: quietLogger{},
	})
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err == nil
}

// Stop stops the server as Ctrl-C would and waits for it to exit; it kills
// the server if it takes longer than half a minute. A stopped server stays
// stopped.
func (s *DiskDevServer) Stop(tb testing.TB) {
	tb.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		tb.Errorf("temporal dev server did not stop within 30s; killed it")
	}
	s.cmd = nil
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
