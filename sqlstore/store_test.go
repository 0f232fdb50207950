package sqlstore_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/secrets"
	"github.com/barfinex/notifier/sqlstore"
)

func MustCreateWebhook(tb testing.TB, s *sqlstore.Store, active bool, events ...notifier.EventType) *notifier.Webhook {
	tb.Helper()
	w := &notifier.Webhook{Name: "desk", URL: "https://example.com/hook", Events: events,
		Secret: "s3cret", Active: active}
	require.NoError(tb, s.CreateWebhook(context.Background(), w))
	return w
}

func MustPublish(tb testing.TB, s *sqlstore.Store, typ notifier.EventType) *notifier.Event {
	tb.Helper()
	ev, err := notifier.NewEvent("", typ, nil, []byte(`{"symbol":"BTCUSDT"}`), time.Now())
	require.NoError(tb, err)
	body, err := ev.Envelope()
	require.NoError(tb, err)
	_, created, err := s.CreateEvent(context.Background(), ev, body)
	require.NoError(tb, err)
	require.True(tb, created)
	return ev
}

// MustDelivery creates a webhook and an event fanned out to it, and returns
// the delivery's id and a function that logs an attempt of it.
func MustDelivery(t *testing.T, s *sqlstore.Store) (string, func(runID string, n, code int, status notifier.DeliveryStatus)) {
	t.Helper()
	ctx := context.Background()
	MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
	ev := MustPublish(t, s, notifier.EventOrderFilled)
	targets, err := s.FanOut(ctx, ev.ID, "", 1000)
	require.NoError(t, err)
	id := targets[0].DeliveryID
	return id, func(runID string, n, code int, status notifier.DeliveryStatus) {
		t.Helper()
		require.NoError(t, s.RecordAttempt(ctx, &notifier.Attempt{DeliveryID: id, RunID: runID,
			Number: n, StartedAt: time.Now(), URL: "https://e.com", StatusCode: code},
			sqlstore.AttemptOutcome{Status: status}))
	}
}

func TestWebhooks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)

		t.Run("CreateAndRead", func(t *testing.T) {
			w := MustCreateWebhook(t, s, true, notifier.EventOrderFilled, notifier.EventSignalEmitted)
			require.Regexp(t, `^wh_[a-z2-7]{26}$`, w.ID)
			got, err := s.Webhook(ctx, w.ID)
			require.NoError(t, err)
			require.Equal(t, w.Name, got.Name)
			require.Equal(t, "s3cret", got.Secret)
			require.ElementsMatch(t, w.Events, got.Events)
			require.True(t, got.Active)
			require.Nil(t, got.LastPing)
			require.Equal(t, notifier.ReachabilityUnknown, got.Reachability())
		})

		t.Run("Update", func(t *testing.T) {
			w := MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
			name, inactive, noSecret := "renamed", false, ""
			got, err := s.UpdateWebhook(ctx, w.ID, &notifier.WebhookUpdate{
				Name: &name, Active: &inactive, Secret: &noSecret,
				Events: []notifier.EventType{notifier.EventServiceDown},
			})
			require.NoError(t, err)
			require.Equal(t, "renamed", got.Name)
			read, err := s.Webhook(ctx, w.ID)
			require.NoError(t, err)
			require.Equal(t, got, read)
			require.False(t, read.Active)
			require.Empty(t, read.Secret)
			require.Equal(t, []notifier.EventType{notifier.EventServiceDown}, read.Events)
			require.Equal(t, w.URL, read.URL, "fields left out stay")
		})

		t.Run("PingResult", func(t *testing.T) {
			w := MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
			at := time.Now().UTC().Truncate(time.Microsecond)
			require.NoError(t, s.SetPingResult(ctx, w.ID, &notifier.PingResult{
				OK: false, StatusCode: 503, Error: "receiver answered 503", Duration: 12 * time.Millisecond, At: at,
			}))
			got, err := s.Webhook(ctx, w.ID)
			require.NoError(t, err)
			require.Equal(t, notifier.ReachabilityUnreachable, got.Reachability())
			require.Equal(t, 503, got.LastPing.StatusCode)
			require.Equal(t, at, got.LastPing.At)

			newURL := "https://other.example.com/hook"
			got, err = s.UpdateWebhook(ctx, w.ID, &notifier.WebhookUpdate{URL: &newURL})
			require.NoError(t, err)
			require.Equal(t, notifier.ReachabilityUnknown, got.Reachability(), "a new URL is untested")
		})

		t.Run("Delete", func(t *testing.T) {
			w := MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
			require.NoError(t, s.DeleteWebhook(ctx, w.ID))
			_, err := s.Webhook(ctx, w.ID)
			require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(err))
			require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(s.DeleteWebhook(ctx, w.ID)))
		})

		t.Run("ErrNotFound", func(t *testing.T) {
			_, err := s.Webhook(ctx, "wh_missing")
			require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(err))
			_, err = s.UpdateWebhook(ctx, "wh_missing", &notifier.WebhookUpdate{})
			require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(err))
		})
	})
}

func TestWebhooks_Pagination(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)
		want := map[string]bool{}
		for range 7 {
			want[MustCreateWebhook(t, s, true, notifier.EventOrderFilled).ID] = true
		}
		seen := map[string]bool{}
		cursor := ""
		pages := 0
		for {
			page, err := s.Webhooks(ctx, 3, cursor)
			require.NoError(t, err)
			pages++
			for _, w := range page.Webhooks {
				require.False(t, seen[w.ID], "webhook %s listed twice", w.ID)
				seen[w.ID] = true
				require.NotEmpty(t, w.Events)
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		require.Equal(t, want, seen)
		require.Equal(t, 3, pages)

		_, err := s.Webhooks(ctx, 3, "not-a-cursor!")
		require.Equal(t, notifier.EINVALID, notifier.ErrorCode(err))
	})
}

func TestEvents_Idempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)
		ev := MustPublish(t, s, notifier.EventOrderFilled)
		body, err := ev.Envelope()
		require.NoError(t, err)

		stored, created, err := s.CreateEvent(ctx, ev, body)
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, body, stored.Body)
		require.True(t, stored.SameContent(ev))

		other := *ev
		other.Data = []byte(`{"symbol":"ETHUSDT"}`)
		require.False(t, stored.SameContent(&other))
	})
}

func TestFanOut(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)
		subscribed := MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
		also := MustCreateWebhook(t, s, true, notifier.EventOrderFilled, notifier.EventOrderPlaced)
		MustCreateWebhook(t, s, false, notifier.EventOrderFilled)  // inactive
		MustCreateWebhook(t, s, true, notifier.EventSignalEmitted) // other type
		ev := MustPublish(t, s, notifier.EventOrderFilled)

		targets, err := s.FanOut(ctx, ev.ID, "", 1000)
		require.NoError(t, err)
		var got []string
		for _, tg := range targets {
			require.Equal(t, notifier.DeliveryID(ev.ID, tg.WebhookID), tg.DeliveryID)
			got = append(got, tg.WebhookID)
		}
		require.ElementsMatch(t, []string{subscribed.ID, also.ID}, got)

		again, err := s.FanOut(ctx, ev.ID, "", 1000)
		require.NoError(t, err)
		require.ElementsMatch(t, targets, again, "fanning out again starts nothing new")

		// Once a delivery has made an attempt, fanning out again leaves it be.
		d := targets[0]
		require.NoError(t, s.RecordAttempt(ctx, &notifier.Attempt{
			DeliveryID: d.DeliveryID, RunID: "run-a", Number: 1, StartedAt: time.Now(), URL: "https://example.com/hook", StatusCode: 200,
		}, sqlstore.AttemptOutcome{Status: notifier.DeliverySucceeded}))
		again, err = s.FanOut(ctx, ev.ID, "", 1000)
		require.NoError(t, err)
		require.Equal(t, []sqlstore.Target{targets[1]}, again)

		// A webhook created after the fan-out gets nothing of this event, even
		// if the event is fanned out again.
		MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
		again, err = s.FanOut(ctx, ev.ID, "", 1000)
		require.NoError(t, err)
		require.Equal(t, []sqlstore.Target{targets[1]}, again)

		_, err = s.FanOut(ctx, "evt_missing", "", 1000)
		require.Equal(t, notifier.ENOTFOUND, notifier.ErrorCode(err))
	})
}

func TestRecordAttempt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)
		w := MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
		ev := MustPublish(t, s, notifier.EventOrderFilled)
		targets, err := s.FanOut(ctx, ev.ID, "", 1000)
		require.NoError(t, err)
		id := targets[0].DeliveryID

		d, err := s.Delivery(ctx, id)
		require.NoError(t, err)
		require.Equal(t, notifier.DeliveryPending, d.Status)
		require.Equal(t, w.ID, d.WebhookID)
		require.Equal(t, notifier.EventOrderFilled, d.EventType)

		next := time.Now().Add(10 * time.Second).UTC().Truncate(time.Microsecond)
		require.NoError(t, s.RecordAttempt(ctx, &notifier.Attempt{
			DeliveryID: id, RunID: "run-a", Number: 1, StartedAt: time.Now(), Duration: 30 * time.Millisecond,
			URL: w.URL, StatusCode: 500, ResponseHeaders: map[string]string{"Content-Type": "text/plain"},
			ResponseBody: "boom", ErrorClass: notifier.ErrClassHTTPStatus, Error: "receiver answered 500",
		}, sqlstore.AttemptOutcome{Status: notifier.DeliveryRetrying, NextAttemptAt: &next}))

		d, err = s.Delivery(ctx, id)
		require.NoError(t, err)
		require.Equal(t, notifier.DeliveryRetrying, d.Status)
		require.Equal(t, 1, d.Attempts)
		require.Equal(t, 500, d.LastStatusCode)
		require.Equal(t, next, *d.NextAttemptAt)
		require.Nil(t, d.CompletedAt)

		require.NoError(t, s.RecordAttempt(ctx, &notifier.Attempt{
			DeliveryID: id, RunID: "run-a", Number: 2, StartedAt: time.Now(), URL: w.URL, StatusCode: 204,
		}, sqlstore.AttemptOutcome{Status: notifier.DeliverySucceeded}))
		d, err = s.Delivery(ctx, id)
		require.NoError(t, err)
		require.Equal(t, notifier.DeliverySucceeded, d.Status)
		require.Equal(t, 2, d.Attempts)
		require.Nil(t, d.NextAttemptAt)
		require.NotNil(t, d.CompletedAt)

		// A late failure cannot undo a success.
		require.NoError(t, s.FinishDelivery(ctx, id, "run-a", notifier.DeliveryFailed, "late"))
		d, err = s.Delivery(ctx, id)
		require.NoError(t, err)
		require.Equal(t, notifier.DeliverySucceeded, d.Status)

		attempts, err := s.Attempts(ctx, id)
		require.NoError(t, err)
		require.Len(t, attempts, 2)
		require.Equal(t, 1, attempts[0].Number)
		require.Equal(t, "boom", attempts[0].ResponseBody)
		require.Equal(t, "text/plain", attempts[0].ResponseHeaders["Content-Type"])
		require.Equal(t, notifier.ErrClassHTTPStatus, attempts[0].ErrorClass)
		require.Equal(t, 204, attempts[1].StatusCode)
	})
}

func TestReopenKeepsData(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)
		w := MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
		require.NoError(t, s.Close())

		s = b.open(t)
		got, err := s.Webhook(ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, w.Name, got.Name)
	})
}

func TestRecordAttempt_Runs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)
		id, record := MustDelivery(t, s)
		for n := 1; n <= 4; n++ {
			record("first", n, 500, notifier.DeliveryRetrying)
		}
		require.NoError(t, s.FinishDelivery(ctx, id, "first", notifier.DeliveryFailed, "receiver answered 500"))

		t.Run("LateAnswerDoesNotReopen", func(t *testing.T) {
			record("first", 3, 500, notifier.DeliveryRetrying)
			d, err := s.Delivery(ctx, id)
			require.NoError(t, err)
			require.Equal(t, notifier.DeliveryFailed, d.Status)
			require.NotNil(t, d.CompletedAt)
		})

		t.Run("ReopenOnlyFinished", func(t *testing.T) {
			before, err := s.ReopenDelivery(ctx, id, false)
			require.NoError(t, err)
			require.Equal(t, notifier.DeliveryFailed, before.Status)
			_, err = s.ReopenDelivery(ctx, id, false)
			require.Equal(t, notifier.ECONFLICT, notifier.ErrorCode(err), "a pending delivery cannot be reopened")
			require.NoError(t, s.RestoreDelivery(ctx, before))
			d, err := s.Delivery(ctx, id)
			require.NoError(t, err)
			require.Equal(t, notifier.DeliveryFailed, d.Status)
		})

		record("second", 1, 502, notifier.DeliveryRetrying)
		record("second", 1, 200, notifier.DeliverySucceeded) // the same attempt, logged again

		atts, err := s.Attempts(ctx, id)
		require.NoError(t, err)
		require.Len(t, atts, 5)
		for _, a := range atts[:4] {
			require.Equal(t, 1, a.Run)
			require.False(t, a.Manual())
		}
		require.Equal(t, 2, atts[4].Run)
		require.True(t, atts[4].Manual())
		require.Equal(t, 200, atts[4].StatusCode, "logging an attempt again replaces it")
		d, err := s.Delivery(ctx, id)
		require.NoError(t, err)
		require.Equal(t, 5, d.Attempts)
		require.Equal(t, notifier.DeliverySucceeded, d.Status)

		_, err = s.ReopenDelivery(ctx, id, false)
		require.Equal(t, notifier.ECONFLICT, notifier.ErrorCode(err), "a delivery that succeeded is not retried")

		record("second", 2, 200, notifier.DeliverySucceeded) // a duplicate after the success
		d, err = s.Delivery(ctx, id)
		require.NoError(t, err)
		require.Equal(t, 6, d.Attempts, "every logged attempt is counted")
	})
}

func TestSecretsSealed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		oldKey, newKey := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
		rawSecret := func(id string) string { return b.rawSecret(t, id) }

		// A secret written before any key stays readable once a key is set.
		plainStore := b.open(t)
		early := MustCreateWebhook(t, plainStore, true, notifier.EventOrderFilled)
		require.NoError(t, plainStore.Close())
		require.Equal(t, "s3cret", rawSecret(early.ID))

		oldRing, err := secrets.NewKeyring(oldKey)
		require.NoError(t, err)
		s := b.open(t, sqlstore.WithKeyring(oldRing))
		w := MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
		require.NotContains(t, rawSecret(w.ID), "s3cret", "sealed at rest")
		got, err := s.Webhook(ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, "s3cret", got.Secret)
		got, err = s.Webhook(ctx, early.ID)
		require.NoError(t, err)
		require.Equal(t, "s3cret", got.Secret)
		require.NoError(t, s.Close())

		// Rotation: the new key seals, the old one still opens, and resealing
		// moves every secret to the new key.
		rotated, err := secrets.NewKeyring(newKey, oldKey)
		require.NoError(t, err)
		s = b.open(t, sqlstore.WithKeyring(rotated))
		n, err := s.ResealSecrets(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.True(t, rotated.Current(rawSecret(w.ID)))
		require.True(t, rotated.Current(rawSecret(early.ID)))
		require.NoError(t, s.Close())

		newOnly, err := secrets.NewKeyring(newKey)
		require.NoError(t, err)
		require.ErrorIs(t, b.tryOpen(), secrets.ErrNoKey, "sealed secrets and no key: refuse to start")
		wrong, err := secrets.NewKeyring(bytes.Repeat([]byte{3}, 32))
		require.NoError(t, err)
		require.ErrorIs(t, b.tryOpen(sqlstore.WithKeyring(wrong)), secrets.ErrNoKey)

		s = b.open(t, sqlstore.WithKeyring(newOnly))
		for _, id := range []string{w.ID, early.ID} {
			got, err := s.Webhook(ctx, id)
			require.NoError(t, err)
			require.Equal(t, "s3cret", got.Secret)
		}
	})
}

func TestConcurrentChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)

		t.Run("DifferentFieldsBothStand", func(t *testing.T) {
			w := MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
			for range 20 {
				name, inactive := "renamed", false
				var wg sync.WaitGroup
				errs := make(chan error, 2)
				wg.Add(2)
				go func() {
					defer wg.Done()
					_, err := s.UpdateWebhook(ctx, w.ID, &notifier.WebhookUpdate{Name: &name})
					errs <- err
				}()
				go func() {
					defer wg.Done()
					_, err := s.UpdateWebhook(ctx, w.ID, &notifier.WebhookUpdate{Active: &inactive})
					errs <- err
				}()
				wg.Wait()
				close(errs)
				for err := range errs {
					require.NoError(t, err)
				}
				got, err := s.Webhook(ctx, w.ID)
				require.NoError(t, err)
				require.Equal(t, "renamed", got.Name)
				require.False(t, got.Active)
				orig, active := "desk", true
				_, err = s.UpdateWebhook(ctx, w.ID, &notifier.WebhookUpdate{Name: &orig, Active: &active})
				require.NoError(t, err)
			}
		})

		t.Run("OneReopeningWins", func(t *testing.T) {
			MustCreateWebhook(t, s, true, notifier.EventOrderPlaced)
			ev := MustPublish(t, s, notifier.EventOrderPlaced)
			targets, err := s.FanOut(ctx, ev.ID, "", 1000)
			require.NoError(t, err)
			id := targets[0].DeliveryID
			require.NoError(t, s.FinishDelivery(ctx, id, "r1", notifier.DeliveryFailed, "boom"))
			var wg sync.WaitGroup
			wins := make(chan bool, 8)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := s.ReopenDelivery(ctx, id, false)
					if err != nil {
						require.Equal(t, notifier.ECONFLICT, notifier.ErrorCode(err))
					}
					wins <- err == nil
				}()
			}
			wg.Wait()
			close(wins)
			n := 0
			for w := range wins {
				if w {
					n++
				}
			}
			require.Equal(t, 1, n)
		})

		t.Run("ReplicasMigrateTogether", func(t *testing.T) {
			empty := sqliteBackend(t)
			if b.name == "PostgreSQL" {
				empty = postgresBackend(t)
			}
			var wg sync.WaitGroup
			stores := make([]*sqlstore.Store, 4)
			for i := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					stores[i] = empty.open(t)
				}()
			}
			wg.Wait()
			w := MustCreateWebhook(t, stores[0], true, notifier.EventOrderFilled)
			_, err := stores[3].Webhook(ctx, w.ID)
			require.NoError(t, err)
		})
	})
}

func TestFanOut_Pages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)
		want := map[string]bool{}
		for range 7 {
			MustCreateWebhook(t, s, true, notifier.EventOrderFilled)
		}
		ev := MustPublish(t, s, notifier.EventOrderFilled)
		after, pages := "", 0
		for {
			page, err := s.FanOut(ctx, ev.ID, after, 3)
			require.NoError(t, err)
			pages++
			for _, tg := range page {
				require.False(t, want[tg.DeliveryID], "listed twice")
				want[tg.DeliveryID] = true
				require.Equal(t, "example.com", tg.Host, "the host, never the URL")
			}
			if len(page) < 3 {
				break
			}
			after = page[len(page)-1].DeliveryID
		}
		require.Len(t, want, 7)
		require.Equal(t, 3, pages)
	})
}

func TestStatus_LatestRunDecides(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		ctx := context.Background()
		s := b.open(t)
		id, record := MustDelivery(t, s)
		status := func() notifier.DeliveryStatus {
			d, err := s.Delivery(ctx, id)
			require.NoError(t, err)
			return d.Status
		}

		// Canceled while an attempt was under way, which then succeeded:
		// the receiver has the event, and the delivery says so.
		require.NoError(t, s.FinishDelivery(ctx, id, "one", notifier.DeliveryCanceled, "canceled"))
		record("one", 1, 200, notifier.DeliverySucceeded)
		require.Equal(t, notifier.DeliverySucceeded, status())

		// A later run (a Reset) that fails is what the delivery now is.
		record("two", 1, 500, notifier.DeliveryRetrying)
		require.Equal(t, notifier.DeliveryRetrying, status())
		require.NoError(t, s.FinishDelivery(ctx, id, "two", notifier.DeliveryFailed, "boom"))
		require.Equal(t, notifier.DeliveryFailed, status())

		// An answer from the older run changes nothing.
		record("one", 2, 200, notifier.DeliverySucceeded)
		require.Equal(t, notifier.DeliveryFailed, status())
	})
}
