// Package egress decides where the notifier may connect. Webhook URLs come
// from users, so every connection is checked after name resolution, against
// the address actually dialed: loopback, private, link-local and other
// internal ranges are refused unless the operator opened them.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Policy says which targets are open.
type Policy struct {
	// AllowPrivate opens every address, and plain http. Meant for
	// development.
	AllowPrivate bool
	// Allowed opens exactly the prefixes and host names it holds, for
	// receivers on a private network.
	Allowed []netip.Prefix
	// AllowedHosts are host names, lower case and without a trailing dot,
	// whose addresses are open whatever they are.
	AllowedHosts []string
}

// ParseTargets reads a comma-separated list of CIDR prefixes, addresses and
// host names into a Policy's allow lists.
func ParseTargets(list string) (prefixes []netip.Prefix, hosts []string, err error) {
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			continue
		case strings.Contains(item, "/"):
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, nil, fmt.Errorf("allowed target %q: %w", item, err)
			}
			prefixes = append(prefixes, p.Masked())
		default:
			if ip, err := netip.ParseAddr(item); err == nil {
				prefixes = append(prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
				continue
			}
			host := normalizeHost(item)
			if host == "" || strings.ContainsAny(host, " :/@") {
				return nil, nil, fmt.Errorf("allowed target %q: not a CIDR, address or host name", item)
			}
			hosts = append(hosts, host)
		}
	}
	return prefixes, hosts, nil
}

// ErrRefused is returned, wrapped, when a target is not open.
var ErrRefused = errors.New("target refused")

// RefusedError says which address was refused and why.
type RefusedError struct {
	Target string
	Reason string
}

// Error implements the error interface.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("connection to %s refused: %s (see NOTIFIER_ALLOWED_TARGETS)",
		e.Target, e.Reason)
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// Ranges a receiver may not be in unless the operator opens them.
var internal = mustPrefixes(
	"0.0.0.0/8",       // this network, unspecified
	"10.0.0.0/8",      // private
	"100.64.0.0/10",   // carrier-grade NAT
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, cloud metadata
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation
	"192.88.99.0/24",  // 6to4 relay
	"192.168.0.0/16",  // private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, broadcast
	"::ffff:0:0:0/96", // IPv4-translated
	"::/128",          // unspecified
	"::1/128",         // loopback
	"::/96",           // IPv4-compatible
	"64:ff9b::/96",    // NAT64, may embed an internal IPv4
	"64:ff9b:1::/48",  // local-use NAT64
	"100::/64",        // discard
	"2001::/32",       // Teredo
	"2001:db8::/32",   // documentation
	"2002::/16",       // 6to4, may embed an internal IPv4
	"3fff::/20",       // documentation
	"5f00::/16",       // segment routing
	"fc00::/7",        // unique local
	"fe80::/10",       // link-local
	"fec0::/10",       // site-local
	"ff00::/8",        // multicast
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Internal reports whether addr lies in a range receivers may not be in.
// An IPv4-mapped IPv6 address is judged as the IPv4 address it maps.
func Internal(addr netip.Addr) bool {
	// A zone names an interface, not another address: fe80::1%eth0 is
	// link-local whatever the zone.
	addr = addr.WithZone("").Unmap()
	for _, p := range internal {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// open reports whether the policy lets a connection reach addr.
func (p Policy) open(addr netip.Addr) bool {
	addr = addr.WithZone("").Unmap()
	if p.AllowPrivate || !Internal(addr) {
		return true
	}
	for _, pr := range p.Allowed {
		if pr.Contains(addr) {
			return true
		}
	}
	return false
}

func (p Policy) hostAllowed(host string) bool {
	for _, h := range p.AllowedHosts {
		if h == host {
			return true
		}
	}
	return false
}

func normalizeHost(host string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
}

// ParseIP reads an address in any spelling a resolver might accept: the
// usual forms, and the decimal, octal and hexadecimal IPv4 forms of
// inet_aton ("2130706433", "0x7f.1", "017700000001"). ok is false for a name.
// Such forms are read only to be refused: parsers disagree on them
// ("0127.0.0.1" is 87.0.0.1 to some and 127.0.0.1 to others).
func ParseIP(host string) (netip.Addr, bool) {
	host = normalizeHost(host)
	if addr, err := netip.ParseAddr(host); err == nil {
		return addr, true
	}
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	nums := make([]uint64, len(parts))
	for i, part := range parts {
		n, err := strconv.ParseUint(part, 0, 32)
		if err != nil || part == "" {
			return netip.Addr{}, false
		}
		nums[i] = n
	}
	// The last part fills the bytes the others leave.
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 0xff {
			return netip.Addr{}, false
		}
		v |= n << (8 * (3 - i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// ambiguous reports whether host is an IPv4 address in a spelling other
// than plain dotted decimal, which different parsers read differently.
func ambiguous(host string) bool {
	host = normalizeHost(host)
	if _, err := netip.ParseAddr(host); err == nil {
		return false
	}
	_, ok := ParseIP(host)
	return ok
}

// CheckURL refuses, before any connection, a URL whose scheme or host the
// policy closes: plain http unless allowed, and hosts that are internal
// addresses in any spelling, or local names. Names that resolve to internal
// addresses are caught at connect time.
func (p Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && !p.AllowPrivate {
		return fmt.Errorf("%w: plain %s is refused; use https "+
			"(NOTIFIER_ALLOW_PRIVATE_URLS=true allows http, for development)", ErrRefused, u.Scheme)
	}
	host := normalizeHost(u.Hostname())
	for _, r := range host {
		if r > 0x7f {
			return &RefusedError{Target: host,
				Reason: "host names are given in ASCII (punycode for international ones)"}
		}
	}
	if ambiguous(host) {
		return &RefusedError{Target: host,
			Reason: "an address in an ambiguous spelling; write it as a.b.c.d"}
	}
	if p.AllowPrivate || p.hostAllowed(host) {
		return nil
	}
	if addr, ok := ParseIP(host); ok && !p.open(addr) {
		return &RefusedError{Target: host, Reason: "internal address"}
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return &RefusedError{Target: host, Reason: "local name"}
	}
	return nil
}

// Resolver looks up the addresses of a host name.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer makes connections the policy allows. Each name is resolved once;
// the addresses are checked and only a checked address is dialed, so a
// name cannot pass the check with one address and connect to another.
type Dialer struct {
	Policy   Policy
	Resolver Resolver // default net.DefaultResolver
	Timeout  time.Duration
}

// DialContext connects to addr ("host:port") over network.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	host = normalizeHost(host)
	if ambiguous(host) {
		return nil, &RefusedError{Target: host,
			Reason: "an address in an ambiguous spelling; write it as a.b.c.d"}
	}
	nameAllowed := d.Policy.hostAllowed(host)

	var addrs []netip.Addr
	if ip, ok := ParseIP(host); ok {
		addrs = []netip.Addr{ip}
	} else {
		r := d.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		if addrs, err = r.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, err
		}
	}
	var open []netip.Addr
	for _, a := range addrs {
		if nameAllowed || d.Policy.open(a) {
			open = append(open, a.Unmap())
		}
	}
	if len(open) == 0 {
		target := host
		if len(addrs) > 0 {
			target = fmt.Sprintf("%s (%s)", host, addrs[0].Unmap())
		}
		return nil, &RefusedError{Target: target, Reason: "internal address"}
	}

	dialer := &net.Dialer{Timeout: d.Timeout, KeepAlive: 30 * time.Second}
	if !nameAllowed {
		// A second check on the socket itself, whatever dials it.
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !d.Policy.open(ap.Addr()) {
				return &RefusedError{Target: address, Reason: "internal address"}
			}
			return nil
		}
	}
	var firstErr error
	for _, a := range open {
		conn, err := dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}
