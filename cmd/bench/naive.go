package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// The naive reference: the textbook shape of a delivery on Temporal, one
// workflow per delivery running one ordinary activity that makes the POST.
// None of the notifier's code runs in it.

const naiveTaskQueue = "bench-naive"

// PostInput is one POST of the naive reference.
type PostInput struct {
	URL     string
	EventID string
	Body    []byte
}

// NaiveDelivery runs one Post activity with a 10 s deadline, retried.
func NaiveDelivery(ctx workflow.Context, in PostInput) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 10 * time.Second, MaximumAttempts: 4},
	})
	return workflow.ExecuteActivity(ctx, Post, in).Get(ctx, nil)
}

var postClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256},
}

// Post sends one delivery and fails unless the receiver answers 2xx.
func Post(ctx context.Context, in PostInput) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.URL, bytes.NewReader(in.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Barfinex-Event-Id", in.EventID)
	resp, err := postClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post: receiver answered %d", resp.StatusCode)
	}
	return nil
}

// runNaiveWorker is the naive reference's worker process, with the same
// pollers as the notifier's worker.
func runNaiveWorker(address string, pollers int) error {
	c, err := client.Dial(client.Options{HostPort: address})
	if err != nil {
		return err
	}
	defer c.Close()
	w := sdkworker.New(c, naiveTaskQueue, sdkworker.Options{
		MaxConcurrentWorkflowTaskPollers: pollers,
		MaxConcurrentActivityTaskPollers: pollers,
	})
	w.RegisterWorkflow(NaiveDelivery)
	w.RegisterActivity(Post)
	if err := w.Start(); err != nil {
		return err
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
	w.Stop()
	return nil
}
