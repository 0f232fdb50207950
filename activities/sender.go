package activities

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/egress"
)

// Limits on what is kept of a receiver's answer.
const (
	MaxResponseBody   = 4 << 10
	maxHeaders        = 32
	maxHeaderNameLen  = 128
	maxHeaderValueLen = 512
	maxErrorLen       = 1024
	// maxHeaderBytes bounds all of an answer's headers; beyond it the
	// answer is refused.
	maxHeaderBytes = 64 << 10
)

// DefaultAttemptTimeout bounds one attempt: connect, headers and body.
const DefaultAttemptTimeout = 10 * time.Second

// SenderOptions configure a Sender.
type SenderOptions struct {
	// Timeout bounds one attempt, body included. Default DefaultAttemptTimeout.
	Timeout time.Duration
	// Policy says which targets attempts may connect to. The zero Policy
	// allows public https receivers only.
	Policy egress.Policy
	// Resolver resolves receivers' host names. Default net.DefaultResolver.
	Resolver egress.Resolver
	// MaxPerHost bounds the attempts in flight to one host, so that a slow
	// receiver cannot hold every worker slot. Default 16.
	MaxPerHost int
}

// Sender posts deliveries to receivers. It owns the timeouts, refuses
// internal addresses at connect time, never follows redirects, reads an
// answer only up to a cap, and bounds the attempts in flight per host.
type Sender struct {
	client     *http.Client
	policy     egress.Policy
	resolver   egress.Resolver
	maxPerHost int

	mu       sync.Mutex
	inFlight map[string]int
}

// NewSender returns a Sender with the given options.
func NewSender(opts SenderOptions) *Sender {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultAttemptTimeout
	}
	if opts.MaxPerHost <= 0 {
		opts.MaxPerHost = 16
	}
	dialer := &egress.Dialer{Policy: opts.Policy, Resolver: opts.Resolver, Timeout: opts.Timeout}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   opts.Timeout,
		ResponseHeaderTimeout: opts.Timeout,
		ExpectContinueTimeout: time.Second,
		// Bodies are read raw: a compressed answer cannot expand past the cap.
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	return &Sender{
		client: &http.Client{
			Transport: transport,
			Timeout:   opts.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		policy:     opts.Policy,
		resolver:   opts.Resolver,
		maxPerHost: opts.MaxPerHost,
		inFlight:   map[string]int{},
	}
}

// acquire takes one of host's in-flight places; false when all are taken.
func (s *Sender) acquire(host string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[host] >= s.maxPerHost {
		return false
	}
	s.inFlight[host]++
	return true
}

func (s *Sender) release(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[host]--; s.inFlight[host] <= 0 {
		delete(s.inFlight, host)
	}
}

// Request is one POST to make.
type Request struct {
	URL     string
	Body    []byte
	Headers http.Header
	// Unbounded exempts the request from the per-host bound: a test ping,
	// asked for by a person, is not held back by deliveries.
	Unbounded bool
}

// hostKey names the receiver a request goes to for the per-host bound: its
// first address and port, so that spellings of one host (a name, its
// address, another case) share one bound.
func (s *Sender) hostKey(ctx context.Context, u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(ip.WithZone("").Unmap(), 0).Addr().String() + ":" + port
	}
	r := s.resolver
	if r == nil {
		r = net.DefaultResolver
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if addrs, err := r.LookupNetIP(lctx, "ip", host); err == nil && len(addrs) > 0 {
		return addrs[0].Unmap().String() + ":" + port
	}
	return host + ":" + port
}

// Post makes one attempt and describes it. It never returns an error: a
// failure is an attempt with an error class.
func (s *Sender) Post(ctx context.Context, r Request) *notifier.Attempt {
	a := &notifier.Attempt{URL: r.URL, StartedAt: time.Now().UTC()}
	defer func() { a.Duration = time.Since(a.StartedAt) }()
	fail := func(class, msg string) *notifier.Attempt {
		a.ErrorClass, a.Error = class, clip(msg, maxErrorLen)
		return a
	}

	if err := s.policy.CheckURL(r.URL); err != nil {
		return fail(classify(err), err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, s.client.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return fail(notifier.ErrClassInternal, "build request: "+err.Error())
	}
	if !r.Unbounded {
		key := s.hostKey(ctx, req.URL)
		if !s.acquire(key) {
			return fail(notifier.ErrClassThrottled,
				fmt.Sprintf("%d attempts already in flight to %s", s.maxPerHost, req.URL.Host))
		}
		defer s.release(key)
	}
	req.Header = r.Headers.Clone()
	req.ContentLength = int64(len(r.Body))

	resp, err := s.client.Do(req)
	if err != nil {
		// Not the URL: a channel's URL is its credential.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return fail(classify(err), "post: "+uerr.Err.Error())
		}
		return fail(classify(err), err.Error())
	}
	// Whatever the answer, the connection is closed by the deadline: a
	// body, or a connection taken over by a protocol switch, that stalls
	// cannot hold the attempt past it.
	stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stop()
	defer resp.Body.Close()
	a.StatusCode = resp.StatusCode
	a.ResponseHeaders = keepHeaders(resp.Header)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(notifier.ErrClassHTTPStatus, "receiver switched protocols (101) instead of answering")
	}
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	a.ResponseBody = strings.ToValidUTF8(string(body), string(utf8.RuneError))

	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fail(notifier.ErrClassRedirect, fmt.Sprintf("redirect %d to %q not followed",
			resp.StatusCode, clip(resp.Header.Get("Location"), maxHeaderValueLen)))
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		return fail(notifier.ErrClassHTTPStatus, fmt.Sprintf("receiver answered %d", resp.StatusCode))
	case readErr != nil && ctx.Err() != nil:
		// The answer counts once it has arrived whole, or up to the cap.
		return fail(notifier.ErrClassTimeout, "receiver answered 2xx but its body did not arrive in time")
	case readErr != nil:
		return fail(classify(readErr), "receiver answered 2xx but its body broke off: "+readErr.Error())
	}
	return a
}

// clip cuts s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

func keepHeaders(h http.Header) map[string]string {
	out := make(map[string]string, min(len(h), maxHeaders))
	for k, v := range h {
		if len(out) == maxHeaders {
			break
		}
		val := strings.ToValidUTF8(strings.Join(v, ", "), string(utf8.RuneError))
		out[clip(k, maxHeaderNameLen)] = clip(val, maxHeaderValueLen)
	}
	return out
}

// classify names the kind of failure of a request that got no answer.
func classify(err error) string {
	var (
		dnsErr  *net.DNSError
		netErr  net.Error
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
	)
	switch {
	case errors.Is(err, egress.ErrRefused):
		return notifier.ErrClassRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return notifier.ErrClassTimeout
	case errors.Is(err, context.Canceled):
		return notifier.ErrClassCanceled
	case errors.As(err, &dnsErr):
		return notifier.ErrClassDNS
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &invalid),
		errors.As(err, &host), errors.As(err, &recErr), errors.As(err, &alert),
		strings.Contains(err.Error(), "tls: "):
		return notifier.ErrClassTLS
	default:
		return notifier.ErrClassConnection
	}
}
