package main

import (
	"bufio"
	"context"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// scrape is one reading of a Prometheus text endpoint: each sample's value
// by its series, name and labels as written.
type scrape map[string]float64

func readMetrics(ctx context.Context, url string) (scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	s := scrape{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s[line[:i]] = v
	}
	return s, sc.Err()
}

// sum adds the samples of a metric whose labels contain every one of match
// (written as `name="value"`).
func (s scrape) sum(name string, match ...string) float64 {
	var total float64
	for series, v := range s {
		n, labels, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(labels, m)
		}
		if ok {
			total += v
		}
	}
	return total
}

// quantile estimates a quantile of a histogram from the change in its
// buckets between two readings, as Prometheus's histogram_quantile does.
func quantile(before, after scrape, name string, q float64) float64 {
	type bucket struct{ le, n float64 }
	var buckets []bucket
	for series, v := range after {
		n, labels, _ := strings.Cut(series, "{")
		if n != name+"_bucket" {
			continue
		}
		_, le, ok := strings.Cut(labels, `le="`)
		if !ok {
			continue
		}
		le, _, _ = strings.Cut(le, `"`)
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		buckets = append(buckets, bucket{bound, v - before[series]})
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].le < buckets[j].le })
	if len(buckets) == 0 || buckets[len(buckets)-1].n == 0 {
		return math.NaN()
	}
	rank := q * buckets[len(buckets)-1].n
	lower, below := 0.0, 0.0
	for _, b := range buckets {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return lower
			}
			return lower + (b.le-lower)*(rank-below)/math.Max(b.n-below, 1)
		}
		lower, below = b.le, b.n
	}
	return lower
}

// settledMetrics reads /metrics once the count of deliveries succeeded has
// stopped moving: a receiver has a request a moment before the notifier
// counts its delivery, so a reading taken as the last request arrives can
// miss the last few.
func settledMetrics(ctx context.Context, url string) (scrape, error) {
	const succeeded = `outcome="succeeded"`
	last, err := readMetrics(ctx, url)
	if err != nil {
		return nil, err
	}
	for range 50 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		next, err := readMetrics(ctx, url)
		if err != nil {
			return nil, err
		}
		if next.sum("notifier_deliveries_total", succeeded) ==
			last.sum("notifier_deliveries_total", succeeded) {
			return next, nil
		}
		last = next
	}
	return last, nil
}
