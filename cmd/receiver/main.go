// Command receiver is a webhook receiver for trying the notifier out: it
// prints every delivery it gets and whether its signature verifies, and
// answers 200. Receiver teams can read it as an example of the checks a
// receiver makes.
//
//	go run ./cmd/receiver -addr 127.0.0.1:9000 -secret s3cret
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "address to listen on")
	secret := flag.String("secret", "", "the webhook's secret, to verify signatures")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: *addr, Handler: newHandler(*secret, os.Stdout),
		ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	fmt.Printf("receiving webhooks on http://%s/\n", *addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}

func newHandler(secret string, out io.Writer) http.Handler {
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Verify over the raw bytes, before any JSON parsing.
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		verdict := "unsigned"
		if sig := r.Header.Get("X-Barfinex-Signature"); sig != "" {
			mac := hmac.New(sha256.New, []byte(secret))
			mac.Write(body)
			verdict = "signature INVALID"
			if hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(sig)) {
				verdict = "signature valid"
			}
		}
		// Retries resend the same event id: process each id once.
		id := r.Header.Get("X-Barfinex-Event-Id")
		mu.Lock()
		dup := seen[id]
		seen[id] = true
		mu.Unlock()
		if dup {
			verdict += ", duplicate (already processed)"
		}
		fmt.Fprintf(out, "%s %s delivery=%s attempt=%s %s\n  %s\n",
			time.Now().Format(time.TimeOnly), r.Header.Get("X-Barfinex-Event"),
			r.Header.Get("X-Barfinex-Delivery"), r.Header.Get("X-Barfinex-Attempt"), verdict, body)
		w.WriteHeader(http.StatusOK)
	})
}
