package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mailintake.toml")
	os.WriteFile(file, []byte(`
listen = "127.0.0.1:1111"
data_dir = "/from/file"
log_level = "debug"
plugin_timeout = "5s"
insecure = true

[plugins.basic]
sha256 = "abc"
`), 0o600)
	env := map[string]string{"MAILINTAKE_DATA_DIR": "/from/env", "MAILINTAKE_LISTEN": "127.0.0.1:2222", "MAILINTAKE_SECRET_KEY": "k"}
	c, err := Load([]string{"--config", file, "--listen", "127.0.0.1:3333", "--plugin-dir", dir}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:3333" {
		t.Errorf("Listen = %q, want the flag's value", c.Listen)
	}
	if c.DataDir != "/from/env" {
		t.Errorf("DataDir = %q, want the environment's value", c.DataDir)
	}
	if c.LogLevel != "debug" || c.PluginTimeout != 5*time.Second || !c.Insecure {
		t.Errorf("file values not applied: %+v", c)
	}
	if c.PluginPins["basic"] != "abc" || c.SecretKey != "k" || c.SecretKeyFile != "/from/env/secret.key" {
		t.Errorf("pins %v, key %q, key file %q", c.PluginPins, c.SecretKey, c.SecretKeyFile)
	}
}

func TestErrors(t *testing.T) {
	none := func(string) string { return "" }
	for _, args := range [][]string{
		{"--log-level", "loud"},
		{"--tls-cert", "x"},
		{"--client-ca", "x"},
		{"stray"},
		{"--nope"},
	} {
		if _, err := Load(args, none, io.Discard); err == nil {
			t.Errorf("Load(%v) accepted bad input", args)
		}
	}
	file := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(file, []byte(`colour = "blue"`), 0o600)
	if _, err := Load([]string{"--config", file}, none, io.Discard); err == nil {
		t.Errorf("an unknown config key was accepted")
	}
}

func TestPprofNeedsTheMetricsListener(t *testing.T) {
	if _, err := Load([]string{"--pprof"}, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Errorf("--pprof alone: %v", err)
	}
	c, err := Load([]string{"--pprof", "--metrics-listen", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil || !c.Pprof {
		t.Errorf("--pprof with --metrics-listen: %v, %v", c, err)
	}
}

// The database URL comes from the flag, MAILINTAKE_DATABASE_URL or the file; a URL that is not
// postgres:// is refused without echoing its password.
func TestDatabaseURL(t *testing.T) {
	env := func(k string) string {
		if k == "MAILINTAKE_DATABASE_URL" {
			return "postgres://mi:s3cret@db:5432/mi?sslmode=disable"
		}
		return ""
	}
	c, err := Load(nil, env, io.Discard)
	if err != nil || c.DatabaseURL != "postgres://mi:s3cret@db:5432/mi?sslmode=disable" {
		t.Fatalf("from the environment: %+v, %v", c, err)
	}
	_, err = Load([]string{"--database-url", "mysql://mi:s3cret@db/mi"}, func(string) string { return "" }, io.Discard)
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "--database-url") {
		t.Errorf("a non-PostgreSQL URL: %v", err)
	}
	if r := RedactURL("postgres://mi:s3cret@db:5432/mi"); strings.Contains(r, "s3cret") || !strings.Contains(r, "db:5432") {
		t.Errorf("RedactURL = %q", r)
	}
}

func TestReplicaFlags(t *testing.T) {
	none := func(string) string { return "" }
	pg := []string{"--database-url", "postgres://mi@db/mi"}
	for _, tc := range []struct {
		args []string
		want string // part of the error; empty: accepted
	}{
		{[]string{"--replica-id", "r1"}, "--database-url"},
		{append([]string{"--replica-id", "pod 1"}, pg...), "--replica-id"},
		{append([]string{"--replica-id", "mailintake-0", "--advertise-addr", "10.0.0.5:7465"}, pg...), ""},
		{append([]string{"--advertise-addr", "10.0.0.5"}, pg...), "--advertise-addr"},
		{append([]string{"--peer-ca", "ca.pem"}, pg...), "--tls-cert"},
		{append([]string{"--peer-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, pg...), ""},
	} {
		_, err := Load(tc.args, none, io.Discard)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
	// A replica id is generated once and kept; a wildcard listen address needs --advertise-addr.
	dir := t.TempDir()
	c := &Config{DataDir: dir}
	if err := c.ResolveReplica("127.0.0.1:7465"); err != nil || c.ReplicaID == "" || c.AdvertiseAddr != "127.0.0.1:7465" {
		t.Fatalf("ResolveReplica: %+v, %v", c, err)
	}
	c2 := &Config{DataDir: dir}
	if err := c2.ResolveReplica("127.0.0.1:7465"); err != nil || c2.ReplicaID != c.ReplicaID {
		t.Errorf("the kept id was not reused: %q then %q (%v)", c.ReplicaID, c2.ReplicaID, err)
	}
	if err := (&Config{DataDir: dir}).ResolveReplica("0.0.0.0:7465"); err == nil || !strings.Contains(err.Error(), "--advertise-addr") {
		t.Errorf("a wildcard listen address without --advertise-addr: %v", err)
	}
}

func TestHTTPListen(t *testing.T) {
	none := func(string) string { return "" }
	if _, err := Load([]string{"--http-hosts", "admin.example.com"}, none, io.Discard); err == nil || !strings.Contains(err.Error(), "--http-listen") {
		t.Errorf("--http-hosts without --http-listen: %v", err)
	}
	c, err := Load(nil, func(k string) string {
		return map[string]string{"MAILINTAKE_HTTP_LISTEN": "127.0.0.1:7466", "MAILINTAKE_HTTP_HOSTS": "a.example,b.example"}[k]
	}, io.Discard)
	if err != nil || c.HTTPListen != "127.0.0.1:7466" || c.HTTPHosts != "a.example,b.example" {
		t.Errorf("from the environment: %+v, %v", c, err)
	}
}
