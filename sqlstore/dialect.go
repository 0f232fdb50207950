package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// The store's SQL is written once, with ? placeholders, in the subset that
// SQLite and PostgreSQL share; conn rewrites the placeholders for
// PostgreSQL.
type conn struct {
	*sql.DB
	numbered bool
}

type txConn struct {
	*sql.Tx
	numbered bool
}

// queryer is what both a conn and a txConn offer.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (c conn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return c.DB.ExecContext(ctx, rebind(q, c.numbered), args...)
}

func (c conn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return c.DB.QueryContext(ctx, rebind(q, c.numbered), args...)
}

func (c conn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return c.DB.QueryRowContext(ctx, rebind(q, c.numbered), args...)
}

func (c txConn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return c.Tx.ExecContext(ctx, rebind(q, c.numbered), args...)
}

func (c txConn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return c.Tx.QueryContext(ctx, rebind(q, c.numbered), args...)
}

func (c txConn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return c.Tx.QueryRowContext(ctx, rebind(q, c.numbered), args...)
}

// rebind turns each ? outside a quoted string into $1, $2, … when numbered.
func rebind(q string, numbered bool) string {
	if !numbered || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n, quoted := 0, false
	for _, r := range q {
		switch {
		case r == '\'':
			quoted = !quoted
		case r == '?' && !quoted:
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
