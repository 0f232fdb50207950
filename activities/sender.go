package activities

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/barfinex/notifier"
)

// Limits on what is kept of a receiver's answer.
const (
	MaxResponseBody   = 4 << 10
	maxHeaders        = 32
	maxHeaderValueLen = 512
)

// DefaultAttemptTimeout bounds one attempt: connect, headers and body.
const DefaultAttemptTimeout = 10 * time.Second

// SenderOptions configure a Sender.
type SenderOptions struct {
	// Timeout bounds one attempt, body included. Default DefaultAttemptTimeout.
	Timeout time.Duration
	// AllowPrivate lets attempts connect to loopback, private, link-local and
	// other internal addresses. Default false.
	AllowPrivate bool
}

// Sender posts deliveries to receivers. It owns the timeouts, refuses
// internal addresses at connect time, never follows redirects, and reads an
// answer only up to a cap.
type Sender struct {
	client *http.Client
}

// NewSender returns a Sender with the given options.
func NewSender(opts SenderOptions) *Sender {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultAttemptTimeout
	}
	dialer := &net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}
	if !opts.AllowPrivate {
		// Control runs after name resolution with the address actually being
		// dialed, so a name cannot resolve to one address when checked and
		// another when used.
		dialer.Control = refuseInternal
	}
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
	}
	return &Sender{client: &http.Client{
		Transport: transport,
		Timeout:   opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// Request is one POST to make.
type Request struct {
	URL     string
	Body    []byte
	Headers http.Header
}

// Post makes one attempt and describes it. It never returns an error: a
// failure is an attempt with an error class.
func (s *Sender) Post(ctx context.Context, r Request) *notifier.Attempt {
	a := &notifier.Attempt{URL: r.URL, StartedAt: time.Now().UTC()}
	defer func() { a.Duration = time.Since(a.StartedAt) }()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, strings.NewReader(string(r.Body)))
	if err != nil {
		a.ErrorClass, a.Error = notifier.ErrClassInternal, "build request: "+err.Error()
		return a
	}
	req.Header = r.Headers.Clone()
	req.ContentLength = int64(len(r.Body))

	resp, err := s.client.Do(req)
	if err != nil {
		a.ErrorClass, a.Error = classify(err), err.Error()
		return a
	}
	defer resp.Body.Close()
	a.StatusCode = resp.StatusCode
	a.ResponseHeaders = keepHeaders(resp.Header)
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
	a.ResponseBody = strings.ToValidUTF8(string(body), string(utf8.RuneError))

	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		a.ErrorClass = notifier.ErrClassRedirect
		a.Error = fmt.Sprintf("redirect %d to %q not followed", resp.StatusCode, resp.Header.Get("Location"))
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		a.ErrorClass = notifier.ErrClassHTTPStatus
		a.Error = fmt.Sprintf("receiver answered %d", resp.StatusCode)
	case err != nil:
		// A 2xx whose body stalls or breaks is still an answer: the receiver
		// accepted the delivery.
		a.ResponseBody += "\n[body not read in full: " + err.Error() + "]"
	}
	return a
}

func keepHeaders(h http.Header) map[string]string {
	out := make(map[string]string, min(len(h), maxHeaders))
	for k, v := range h {
		if len(out) == maxHeaders {
			break
		}
		val := strings.Join(v, ", ")
		if len(val) > maxHeaderValueLen {
			val = val[:maxHeaderValueLen]
		}
		out[k] = strings.ToValidUTF8(val, string(utf8.RuneError))
	}
	return out
}

// refusedError is returned when an attempt would connect to an address that
// is not allowed.
type refusedError struct{ addr netip.Addr }

func (e *refusedError) Error() string {
	return fmt.Sprintf("connection to internal address %s refused (set NOTIFIER_ALLOW_PRIVATE_URLS=true to allow)", e.addr)
}

// Ranges that a receiver may not be in unless the operator allows it.
var internalPrefixes = mustPrefixes(
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
	"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "::/96", "64:ff9b::/96", "100::/64", "2001:db8::/32",
	"fc00::/7", "fe80::/10", "ff00::/8",
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Internal reports whether addr is in a range receivers may not be in.
func Internal(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range internalPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func refuseInternal(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("connect to %s: unparsable address", address)
	}
	if Internal(ap.Addr()) {
		return &refusedError{addr: ap.Addr().Unmap()}
	}
	return nil
}

// classify names the kind of failure of a request that got no answer.
func classify(err error) string {
	var (
		refused *refusedError
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
	case errors.As(err, &refused):
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
