// Package sqlstore keeps the notifier's configuration and delivery log in a
// SQL database: a SQLite file by default, or PostgreSQL when the notifier
// runs on more than one machine. One schema, kept in embedded, versioned
// migrations that run when the store opens, serves both.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/barfinex/notifier"
	"github.com/barfinex/notifier/secrets"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a notifier store on a SQL database. It is safe for concurrent use.
type Store struct {
	db conn
	// keys seals webhook secrets; nil stores them as they are.
	keys *secrets.Keyring
	// now is the clock; tests may replace it.
	now func() time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithKeyring seals webhook secrets with k before they are written, and
// opens them with it when they are read.
func WithKeyring(k *secrets.Keyring) Option {
	return func(s *Store) { s.keys = k }
}

// OpenSQLite opens (creating if needed) the SQLite database file at path and
// brings its schema up to date.
func OpenSQLite(ctx context.Context, path string, opts ...Option) (*Store, error) {
	// WAL lets readers run beside the writer; an immediate transaction takes
	// the write lock at BEGIN, so two writers wait for each other instead of
	// failing on a lock upgrade.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	// The file holds secrets: readable by its owner alone.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		f.Close()
		_ = os.Chmod(path, 0o600)
	}
	unlock, err := lockFile(path + ".migrate-lock")
	if err != nil {
		db.Close()
		return nil, err
	}
	defer unlock()
	return open(ctx, conn{DB: db}, goose.DialectSQLite3, opts)
}

// OpenPostgres connects to the PostgreSQL database at url (postgres://…)
// and brings its schema up to date. Replicas starting together migrate one
// at a time, under an advisory lock.
func OpenPostgres(ctx context.Context, url string, pool PoolConfig,
	opts ...Option) (*Store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	pool.apply(db)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return open(ctx, conn{DB: db, numbered: true}, goose.DialectPostgres, opts)
}

// PoolConfig sizes a PostgreSQL connection pool; zero fields keep
// database/sql's defaults.
type PoolConfig struct {
	MaxOpen     int
	MaxIdle     int
	MaxLifetime time.Duration
}

func (p PoolConfig) apply(db *sql.DB) {
	if p.MaxOpen > 0 {
		db.SetMaxOpenConns(p.MaxOpen)
	}
	if p.MaxIdle > 0 {
		db.SetMaxIdleConns(p.MaxIdle)
	}
	if p.MaxLifetime > 0 {
		db.SetConnMaxLifetime(p.MaxLifetime)
	}
}

func open(ctx context.Context, c conn, dialect goose.Dialect, opts []Option) (*Store, error) {
	s := &Store{db: c, now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	if err := s.migrate(ctx, dialect); err != nil {
		c.Close()
		return nil, err
	}
	if err := s.checkKeys(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// checkKeys refuses to open a store whose sealed secrets the configured
// keys cannot open: better not to start than to fail every delivery.
func (s *Store) checkKeys(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT id, secret, channel FROM webhooks
		WHERE secret LIKE 'sealed:%' OR channel LIKE 'sealed:%'`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, secret, channel string
		if err := rows.Scan(&id, &secret, &channel); err != nil {
			return err
		}
		_, err1 := s.keys.Open(secret, id)
		_, err2 := s.keys.Open(channel, id+"/channel")
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("webhook %s: %w (set NOTIFIER_SECRET_KEY to the key that sealed it, "+
				"or list that key in NOTIFIER_SECRET_KEY_PREVIOUS)", id, err)
		}
	}
	return rows.Err()
}

func (s *Store) migrate(ctx context.Context, dialect goose.Dialect) error {
	var opts []goose.ProviderOption
	if dialect == goose.DialectPostgres {
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	provider, err := goose.NewProvider(dialect, s.db.DB, mustSub(migrations, "migrations"), opts...)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := provider.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// clock returns the time now, at the precision the store keeps.
func (s *Store) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx txConn) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(txConn{Tx: tx, numbered: s.db.numbered}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Times are stored as fixed-width UTC text, so they sort as text and read the
// same in any SQL database.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func nullTime(t *time.Time) sql.NullString {
	if t == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: formatTime(*t), Valid: true}
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", s, err)
	}
	return t, nil
}

func parseNullTime(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	return &t, err
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func nullInt(n int) sql.NullInt64 { return sql.NullInt64{Int64: int64(n), Valid: n != 0} }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// placeholders returns "?, ?, ?" for n arguments.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func notFound(what, id string) error {
	return notifier.Errorf(notifier.ENOTFOUND, "%s %q not found", what, id)
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// isForeignKeyViolation reports whether err is a write refused by a
// foreign key, on either backend.
func isForeignKeyViolation(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23503"
	}
	return strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}

// touchedOne turns a statement that changed no row into a not-found error.
func touchedOne(res sql.Result, err error, what, id string) error {
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return notFound(what, id)
	}
	return nil
}

// queryIDs returns the single text column of every row a query yields.
func queryIDs(ctx context.Context, q queryer, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// listPage runs a newest-first listing: query (which ends in a WHERE clause)
// continued after cursor, limit rows at a time. It returns the rows and the
// cursor of the next page, empty on the last one.
func listPage[T any](ctx context.Context, q queryer, query string, args []any, cursor string,
	limit int, scan func(scanner) (T, error), key func(T) (time.Time, string)) ([]T, string, error) {
	if cursor != "" {
		created, id, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		query += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, created, created, id)
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit+1)

	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var items []T
	for rows.Next() {
		item, err := scan(rows)
		if err != nil {
			return nil, "", err
		}
		items = append(items, item)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(items) <= limit {
		return items, "", nil
	}
	items = items[:limit]
	created, id := key(items[limit-1])
	return items, encodeCursor(formatTime(created), id), nil
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
