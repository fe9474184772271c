// Package postgres starts a private PostgreSQL server for tests, from the binaries of Debian's
// `postgresql` package (/usr/lib/postgresql/<version>/bin, which is not on PATH): a cluster made
// by initdb in a temporary directory, listening on 127.0.0.1 on a free port only, its unix socket
// in that directory, with fsync off for speed. It stops when the test ends.
//
// initdb and postgres refuse to run as root, so when the test runs as root (as CI does) both run
// as the `postgres` system user that the Debian package creates, in a directory owned by it.
//
// Tests fail (they do not skip) when PostgreSQL is not installed: `.ci/install-postgres` (or
// `apt-get install postgresql`) installs it.
package postgres

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailintake/mailintake/internal/testutil"
)

// User is the superuser of every private server (trust authentication, no password).
const User = "mi"

// Server is a running private PostgreSQL.
type Server struct {
	// Dir is the temporary directory: the cluster in Dir/data, the unix socket and the log.
	Dir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// LogPath is the server's log file.
	LogPath string

	bin  string
	cred *syscall.Credential // nil: run as the current user
	cmd  *exec.Cmd
	done chan struct{} // closed when the server process has exited

	mu    sync.Mutex
	dbSeq int
}

// BinDir returns the directory of the newest installed PostgreSQL server binaries (initdb and
// postgres), or an error that says how to install them.
func BinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first: "15" sorts after "9.6" as numbers, not as strings.
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	// Other layouts (a source build, another distribution) have them on PATH.
	if p, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL is not installed (no initdb and postgres under /usr/lib/postgresql/*/bin or on PATH): " +
		"run .ci/install-postgres, or apt-get install postgresql")
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// freePort is testutil.FreePort.
var freePort = testutil.FreePort

// Start initialises and starts a private PostgreSQL. It stops, and its directory is removed, when
// the test ends. It fails the test when PostgreSQL is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		t.Fatalf("%v", err)
	}
	// The server runs as another user when this is root: every directory on the path must be
	// traversable by it, which rules out t.TempDir() (mode 0700 under a 0700 parent).
	parent := os.TempDir()
	if os.Getuid() == 0 {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "mailintake-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{Dir: dir, LogPath: filepath.Join(dir, "postgres.log"), bin: bin}
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and initdb refuses root, but there is no postgres user to run it as (%v): "+
				"apt-get install postgresql creates it", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	data := filepath.Join(dir, "data")
	start := time.Now()
	initdb := s.command(filepath.Join(bin, "initdb"), "-D", data, "--no-sync", "--auth=trust", "-U", User,
		"--encoding=UTF8", "--locale=C.UTF-8")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	t.Logf("postgres: initdb %s in %v", data, time.Since(start).Round(time.Millisecond))

	// A free port can be taken by another process before the server binds it: then try another.
	for attempt := 1; ; attempt++ {
		err := s.launch(t, data)
		if err == nil {
			break
		}
		log := s.Log()
		if attempt < 3 && strings.Contains(log, "could not bind") {
			t.Logf("postgres: port %d was taken, trying another", s.Port)
			continue
		}
		t.Fatalf("postgres did not start: %v\n%s", err, log)
	}
	t.Cleanup(s.Stop)
	return s
}

// launch starts the server on a free port and waits until it accepts connections.
func (s *Server) launch(t testing.TB, data string) error {
	s.Port = freePort(t)
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd = s.command(filepath.Join(s.bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(s.Port), "-k", s.Dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning", "-c", "log_min_error_statement=panic")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// If the test binary dies without its cleanup (a panic, a timeout), the server goes too:
	// SIGQUIT is PostgreSQL's immediate shutdown.
	s.cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	done := make(chan struct{})
	s.done = done
	go func(cmd *exec.Cmd) { cmd.Wait(); close(done) }(s.cmd)
	if err := s.waitReady(15 * time.Second); err != nil {
		s.Stop()
		return err
	}
	t.Logf("postgres: listening on 127.0.0.1:%d after %v", s.Port, time.Since(start).Round(time.Millisecond))
	return nil
}

// command runs name as the server's user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	// Only what PostgreSQL needs: no PG* variables of the caller leak in.
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TZ=UTC", "HOME=" + s.Dir}
	return cmd
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			err = c.Ping(ctx)
			c.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("the server exited: %v", s.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL returns the connection URL of database db (TCP on 127.0.0.1, no TLS, no password).
func (s *Server) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(User), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// CreateDatabase creates an empty database and returns its URL. An empty name picks a fresh one
// ("t1", "t2", …). The database collates text by ICU's en-US rules, as a production database
// with a linguistic default collation does, so a query that depends on byte order without saying
// so shows up in tests.
func (s *Server) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	if name == "" {
		s.mu.Lock()
		s.dbSeq++
		name = fmt.Sprintf("t%d", s.dbSeq)
		s.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connecting to the private postgres: %v", err)
	}
	defer c.Close(ctx)
	q := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() +
		" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
	if _, err := c.Exec(ctx, q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s.URL(name)
}

// Exec runs SQL statements in database db as the superuser, failing the test on an error.
func (s *Server) Exec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		t.Fatalf("connecting to %s: %v", db, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// QueryInt runs a query returning one integer in database db as the superuser, failing the test
// on an error.
func (s *Server) QueryInt(t testing.TB, db, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		t.Fatalf("connecting to %s: %v", db, err)
	}
	defer c.Close(ctx)
	var n int64
	if err := c.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// Stop stops the server at once (PostgreSQL's immediate shutdown: every connection drops). A
// stopped server stays stopped; Stop is idempotent and also runs at the test's cleanup.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Log returns the server's log so far (for a failing test's message).
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(bytes.TrimSpace(b))
}

// DataDir is the cluster's data directory.
func (s *Server) DataDir() string { return filepath.Join(s.Dir, "data") }

// DatabaseDir returns the directory of database db's files in the cluster (base/<oid>), to check
// what reaches the disk.
func (s *Server) DatabaseDir(t testing.TB, db string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var oid uint32
	if err := c.QueryRow(ctx, `SELECT oid FROM pg_database WHERE datname = $1`, db).Scan(&oid); err != nil {
		t.Fatalf("database %s: %v", db, err)
	}
	return filepath.Join(s.DataDir(), "base", strconv.FormatUint(uint64(oid), 10))
}
