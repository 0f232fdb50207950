package egress_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier/egress"
)

// resolver answers from a table, as a DNS server the attacker controls might.
type resolver map[string][]string

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ips, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(ips))
	for i, ip := range ips {
		out[i] = netip.MustParseAddr(ip)
	}
	return out, nil
}

// Addresses in every closed range, in the spellings resolvers accept.
var closed = []string{
	"127.0.0.1", "127.8.9.10", "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255",
	"172.16.0.1", "172.31.255.254", "192.168.1.1", "169.254.169.254", "100.64.0.1",
	"100.127.255.254", "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.51.100.7",
	"203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
	"::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
	"::127.0.0.1", "::a00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001:db8::1",
	"fc00::1", "fd12:3456::1", "fe80::1", "ff02::1", "100::1", "2001::1",
	"::1%lo", "fe80::1%eth0", "::ffff:127.0.0.1%1", "::ffff:0:127.0.0.1",
}

func TestInternal(t *testing.T) {
	for _, s := range closed {
		require.True(t, egress.Internal(netip.MustParseAddr(s)), s)
	}
	for _, s := range []string{"1.1.1.1", "8.8.8.8", "93.184.216.34", "172.32.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"} {
		require.False(t, egress.Internal(netip.MustParseAddr(s)), s)
	}
}

func TestParseIP(t *testing.T) {
	for spelling, want := range map[string]string{
		"2130706433":        "127.0.0.1",
		"0x7f000001":        "127.0.0.1",
		"017700000001":      "127.0.0.1",
		"0x7f.1":            "127.0.0.1",
		"127.1":             "127.0.0.1",
		"0177.0.0.01":       "127.0.0.1",
		"127.0.0.1.":        "127.0.0.1",
		"[::1]":             "::1",
		"0xa9.0xfe.169.254": "169.254.169.254",
		"3232235777":        "192.168.1.1",
	} {
		got, ok := egress.ParseIP(spelling)
		require.True(t, ok, spelling)
		require.Equal(t, want, got.String(), spelling)
	}
	for _, name := range []string{"example.com", "1.2.3.4.5", "0x1g", "256.1.1.1", "hooks.slack.com"} {
		_, ok := egress.ParseIP(name)
		require.False(t, ok, name)
	}
}

func TestDialer_RefusesClosedTargets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan struct{}, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()

	names := resolver{}
	var targets []string
	for _, ip := range closed {
		name := "rebind-" + netip.MustParseAddr(ip).StringExpanded() + ".example"
		names[name] = []string{ip}
		targets = append(targets, name, "["+ip+"]")
	}
	names["mixed.example"] = []string{"127.0.0.1", "10.0.0.1"}
	targets = append(targets, "mixed.example", "localhost", "2130706433", "0x7f.1", "017700000001",
		"127.0.0.1.", "0177.0.0.01")
	names["localhost"] = []string{"127.0.0.1", "::1"}

	d := &egress.Dialer{Resolver: names, Timeout: time.Second}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, host := range targets {
		_, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort(trim(host), port))
		require.ErrorIs(t, err, egress.ErrRefused, host)
		var refused *egress.RefusedError
		require.True(t, errors.As(err, &refused), host)
	}
	select {
	case <-accepted:
		t.Fatal("a refused target was connected to")
	default:
	}
}

func trim(host string) string {
	if len(host) > 1 && host[0] == '[' {
		return host[1 : len(host)-1]
	}
	return host
}

func TestDialer_AllowList(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	names := resolver{"hooks.internal": {"127.0.0.1"}, "other.internal": {"127.0.0.1"}}
	dial := func(p egress.Policy, host string) error {
		d := &egress.Dialer{Policy: p, Resolver: names, Timeout: time.Second}
		c, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort(host, port))
		if err == nil {
			c.Close()
		}
		return err
	}

	prefixes, hosts, err := egress.ParseTargets("127.0.0.1/32, 10.1.0.0/16")
	require.NoError(t, err)
	byPrefix := egress.Policy{Allowed: prefixes, AllowedHosts: hosts}
	require.NoError(t, dial(byPrefix, "127.0.0.1"))
	require.NoError(t, dial(byPrefix, "hooks.internal"))

	prefixes, hosts, err = egress.ParseTargets("Hooks.Internal.")
	require.NoError(t, err)
	byName := egress.Policy{Allowed: prefixes, AllowedHosts: hosts}
	require.NoError(t, dial(byName, "hooks.internal"))
	require.ErrorIs(t, dial(byName, "other.internal"), egress.ErrRefused, "only the name given is opened")
	require.ErrorIs(t, dial(byName, "127.0.0.1"), egress.ErrRefused)

	require.NoError(t, dial(egress.Policy{AllowPrivate: true}, "other.internal"))

	prefixes, _, err = egress.ParseTargets("127.0.0.2")
	require.NoError(t, err)
	require.ErrorIs(t, dial(egress.Policy{Allowed: prefixes}, "127.0.0.1"), egress.ErrRefused,
		"an address opens that address only")

	for _, bad := range []string{"10.0.0.0/33", "http://x", "a b"} {
		_, _, err := egress.ParseTargets(bad)
		require.Error(t, err, bad)
	}
}

func TestCheckURL(t *testing.T) {
	strict := egress.Policy{}
	for _, u := range []string{
		"http://example.com/hook", "https://127.0.0.1/x", "https://[::1]/x", "https://2130706433/x",
		"https://0x7f.1/x", "https://169.254.169.254/latest", "https://localhost/x",
		"https://api.localhost./x", "https://[::ffff:10.0.0.1]:8443/x", "https://10.1.2.3/x",
		"https://[::1%25lo]:29002/zone", "https://[fe80::1%25eth0]/x",
	} {
		require.ErrorIs(t, strict.CheckURL(u), egress.ErrRefused, u)
	}
	for _, u := range []string{"https://0127.0.0.1/x", "https://0x5d.1/x", "https://1558271010/x",
		"https://１２７.０.０.１/x"} {
		require.ErrorIs(t, strict.CheckURL(u), egress.ErrRefused, u)
		require.ErrorIs(t, egress.Policy{AllowPrivate: true}.CheckURL(u), egress.ErrRefused,
			"%s: ambiguous even where private addresses are open", u)
	}
	require.NoError(t, strict.CheckURL("https://hooks.example.com/x"))
	require.NoError(t, strict.CheckURL("https://93.184.216.34/x"))
	require.NoError(t, egress.Policy{AllowPrivate: true}.CheckURL("http://127.0.0.1:9000/x"))
	prefixes, _, _ := egress.ParseTargets("10.1.0.0/16")
	require.NoError(t, egress.Policy{Allowed: prefixes}.CheckURL("https://10.1.2.3/x"))
}
