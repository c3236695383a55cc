// Package pgtest gives tests a PostgreSQL database of their own: a fresh
// schema in the server named by GUEST_AUTH_TEST_POSTGRES (.ci/postgres.sh
// starts one). Without that variable the test is skipped, unless CI is set:
// in CI a missing server is a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the test server's connection URL.
const EnvVar = "GUEST_AUTH_TEST_POSTGRES"

// ServerDSN is the test server's URL; it skips (or, in CI, fails) t when
// none is configured.
func ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvVar)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set, and CI is: the PostgreSQL tests must run in CI (.ci/run starts a server)", EnvVar)
		}
		t.Skipf("%s is not set: start a server with `eval \"$(.ci/postgres.sh start)\"` to run the PostgreSQL tests", EnvVar)
	}
	return dsn
}

// DSN creates a new, empty schema, dropped at the test's end, and returns
// a URL whose connections use it (search_path).
func DSN(t testing.TB) string {
	t.Helper()
	dsn := ServerDSN(t)
	schema := "gatest_" + strings.ToLower(rand.Text())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting to the test server: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, dsn); err == nil {
			_, _ = conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			_ = conn.Close(ctx)
		}
	})
	return WithSearchPath(t, dsn, schema)
}

// WithSearchPath adds search_path to a URL connection string, and
// application_name = schema, so a test can tell its own connections in
// pg_stat_activity from those of the tests running beside it (AppName).
func WithSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		t.Fatalf("%s must be a postgres:// URL", EnvVar)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// AppName is the application_name of dsn (a DSN made by DSN): only this
// test's connections carry it.
func AppName(t testing.TB, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || u.Query().Get("application_name") == "" {
		t.Fatalf("%q has no application_name", dsn)
	}
	return u.Query().Get("application_name")
}
