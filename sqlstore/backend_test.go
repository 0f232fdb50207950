package sqlstore_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/stretchr/testify/require"

	"github.com/barfinex/notifier/internal/testenv"
	"github.com/barfinex/notifier/sqlstore"
)

// backend is one database a test runs against: a fresh SQLite file, or a
// fresh schema in the PostgreSQL that NOTIFIER_TEST_POSTGRES_URL names.
type backend struct {
	name string
	// open opens the backend's database, failing the test on an error;
	// tryOpen returns the error.
	open      func(tb testing.TB, opts ...sqlstore.Option) *sqlstore.Store
	tryOpen   func(opts ...sqlstore.Option) error
	rawSecret func(tb testing.TB, webhookID string) string
}

// forEachBackend runs fn once for each backend, each on an empty database.
func forEachBackend(t *testing.T, fn func(t *testing.T, b *backend)) {
	t.Run("SQLite", func(t *testing.T) { fn(t, sqliteBackend(t)) })
	if os.Getenv("NOTIFIER_TEST_POSTGRES_URL") != "" {
		t.Run("PostgreSQL", func(t *testing.T) { fn(t, postgresBackend(t)) })
	}
}

func sqliteBackend(t *testing.T) *backend {
	path := filepath.Join(t.TempDir(), "notifier.db")
	return &backend{
		name: "SQLite",
		open: func(tb testing.TB, opts ...sqlstore.Option) *sqlstore.Store {
			s, err := sqlstore.OpenSQLite(context.Background(), path, opts...)
			require.NoError(tb, err)
			tb.Cleanup(func() { s.Close() })
			return s
		},
		tryOpen: func(opts ...sqlstore.Option) error {
			s, err := sqlstore.OpenSQLite(context.Background(), path, opts...)
			if err == nil {
				s.Close()
			}
			return err
		},
		rawSecret: func(tb testing.TB, id string) string {
			return rawSecret(tb, "sqlite", path, "SELECT secret FROM webhooks WHERE id = ?", id)
		},
	}
}

func postgresBackend(t *testing.T) *backend {
	dsn := testenv.PostgresURL(t)
	return &backend{
		name: "PostgreSQL",
		open: func(tb testing.TB, opts ...sqlstore.Option) *sqlstore.Store {
			s, err := sqlstore.OpenPostgres(context.Background(), dsn, sqlstore.PoolConfig{}, opts...)
			require.NoError(tb, err)
			tb.Cleanup(func() { s.Close() })
			return s
		},
		tryOpen: func(opts ...sqlstore.Option) error {
			s, err := sqlstore.OpenPostgres(context.Background(), dsn, sqlstore.PoolConfig{}, opts...)
			if err == nil {
				s.Close()
			}
			return err
		},
		rawSecret: func(tb testing.TB, id string) string {
			return rawSecret(tb, "pgx", dsn, "SELECT secret FROM webhooks WHERE id = $1", id)
		},
	}
}

func rawSecret(tb testing.TB, driver, dsn, query, id string) string {
	db, err := sql.Open(driver, dsn)
	require.NoError(tb, err)
	defer db.Close()
	var v string
	require.NoError(tb, db.QueryRow(query, id).Scan(&v))
	return v
}
