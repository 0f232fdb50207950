package main

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// receivers are the benchmark's webhook receivers: loopback HTTP servers
// that answer at once and note when each event reached each of them.
type receivers struct {
	servers []*http.Server
	urls    []string

	mu sync.Mutex
	// first is the first arrival of each (receiver, event id).
	first map[arrivalKey]time.Time
	// total counts every request, duplicates included; pings excluded.
	total  int
	want   int
	wantCh chan struct{}
	// status is what the receivers answer.
	status int
}

type arrivalKey struct {
	receiver int
	eventID  string
}

func newReceivers(n int) (*receivers, error) {
	rs := &receivers{first: map[arrivalKey]time.Time{}, status: http.StatusOK}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			rs.close()
			return nil, err
		}
		srv := &http.Server{Handler: rs.handler(i), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		rs.servers = append(rs.servers, srv)
		rs.urls = append(rs.urls, "http://"+ln.Addr().String()+"/hook")
	}
	return rs, nil
}

func (rs *receivers) handler(i int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		at := time.Now()
		rs.mu.Lock()
		status := rs.status
		if r.Header.Get("X-Barfinex-Event") != "ping" {
			rs.total++
			k := arrivalKey{i, r.Header.Get("X-Barfinex-Event-Id")}
			if _, seen := rs.first[k]; !seen {
				rs.first[k] = at
				if rs.wantCh != nil && len(rs.first) >= rs.want {
					close(rs.wantCh)
					rs.wantCh = nil
				}
			}
		}
		rs.mu.Unlock()
		w.WriteHeader(status)
	}
}

// reset forgets every arrival and returns a channel closed once want
// distinct (receiver, event) pairs have arrived.
func (rs *receivers) reset(want int) <-chan struct{} {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.first, rs.total, rs.want = map[arrivalKey]time.Time{}, 0, want
	rs.wantCh = make(chan struct{})
	if want == 0 {
		close(rs.wantCh)
		rs.wantCh = nil
	}
	ch := rs.wantCh
	if ch == nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return ch
}

// arrivals returns a copy of the first arrivals, the number of distinct
// arrivals and of all requests.
func (rs *receivers) arrivals() (map[arrivalKey]time.Time, int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	m := make(map[arrivalKey]time.Time, len(rs.first))
	for k, v := range rs.first {
		m[k] = v
	}
	return m, rs.total
}

func (rs *receivers) close() {
	for _, s := range rs.servers {
		_ = s.Close()
	}
}
