// Package config loads the server's configuration from flags, environment variables and an
// optional TOML file, in that order of precedence.
//
// Every flag --some-name has the environment variable MAILINTAKE_SOME_NAME and the file key
// some_name. Plugin pins live in the file only:
//
//	[plugins.basic]
//	sha256 = "9f86d08…"
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// EnvPrefix prefixes every environment variable.
const EnvPrefix = "MAILINTAKE_"

// Config is the server's configuration.
type Config struct {
	Listen  string
	DataDir string
	// DatabaseURL, when set, is a PostgreSQL database (postgres://user:pw@host:port/db) shared by
	// several replicas instead of the embedded SQLite file in DataDir.
	DatabaseURL string
	// ReplicaID names this replica among those sharing DatabaseURL (default: one derived once and
	// kept in DataDir); AdvertiseAddr is where the other replicas reach its API port (default:
	// Listen, unless that is a wildcard address).
	ReplicaID     string
	AdvertiseAddr string
	PluginDir     string
	ConfigFile    string
	SecretKeyFile string
	// SecretKey is the key itself, from MAILINTAKE_SECRET_KEY only (never a flag: argv is visible
	// to every user of the machine).
	SecretKey string
	TLSCert   string
	TLSKey    string
	ClientCA  string
	// PeerCA verifies the other replicas' API certificates (with the system's roots and
	// ClientCA), for a cluster served with TLS under a private CA.
	PeerCA        string
	Insecure      bool
	LogLevel      string
	LogFormat     string
	PluginTimeout time.Duration
	MetricsListen string
	// Pprof also serves Go's profiler at /debug/pprof/ on the metrics listener.
	Pprof bool
	// HTTPListen, when set, serves the admin web page (internal/web) on its own listener.
	HTTPListen string
	// HTTPHosts are host names, besides HTTPListen's own (and the loopback names when it is a
	// loopback address), that the web page answers to: its Host allowlist.
	HTTPHosts string
	// PluginPins maps a provider name to the SHA-256 its executable must have.
	PluginPins map[string]string
}

// Load parses args (without the program name) with the environment from getenv.
func Load(args []string, getenv func(string) string, usage io.Writer) (*Config, error) {
	c := &Config{PluginPins: map[string]string{}}
	fs := flag.NewFlagSet("mailintaked", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:7465", "address to serve the gRPC API on")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the embedded database, the secret key and admin.token")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL database to use instead of the embedded SQLite file, e.g. postgres://mailintake:PW@db:5432/mailintake?sslmode=disable (better in MAILINTAKE_DATABASE_URL: argv is visible to every user of the machine)")
	fs.StringVar(&c.ReplicaID, "replica-id", "", "this replica's name among those sharing --database-url, e.g. the pod name (default: one generated once and kept in <data-dir>/replica.id)")
	fs.StringVar(&c.AdvertiseAddr, "advertise-addr", "", "host:port where the other replicas reach this one's --listen port (default: --listen, unless it is a wildcard address)")
	fs.StringVar(&c.PluginDir, "plugin-dir", "", "directory of mailintake-auth-<name> plugins (default: the server binary's directory)")
	fs.StringVar(&c.ConfigFile, "config", "", "TOML configuration file")
	fs.StringVar(&c.SecretKeyFile, "secret-key-file", "", "file with the 32-byte key that encrypts secrets at rest (default: <data-dir>/secret.key, generated on first start); MAILINTAKE_SECRET_KEY may hold the key itself")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate chain for the API")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key for the API")
	fs.StringVar(&c.ClientCA, "client-ca", "", "PEM CA bundle: require API clients to present a certificate it signed (mTLS)")
	fs.StringVar(&c.PeerCA, "peer-ca", "", "with --database-url and --tls-cert: PEM CA bundle that signed the other replicas' API certificates (default: the system's roots and --client-ca)")
	fs.BoolVar(&c.Insecure, "insecure", false, "allow serving without TLS on a non-loopback address")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.DurationVar(&c.PluginTimeout, "plugin-timeout", 30*time.Second, "deadline of each auth plugin call")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "address to serve Prometheus metrics on at /metrics (e.g. 127.0.0.1:7467); empty: off")
	fs.BoolVar(&c.Pprof, "pprof", false, "also serve Go's profiler at /debug/pprof/ on --metrics-listen (keep that address private)")
	fs.StringVar(&c.HTTPListen, "http-listen", "", "address to serve the admin web page on (e.g. 127.0.0.1:7466); plaintext only on loopback unless --insecure, HTTPS with --tls-cert; empty: off")
	fs.StringVar(&c.HTTPHosts, "http-hosts", "", "comma-separated host names the web page also answers to (its Host allowlist holds --http-listen's address, and the loopback names when that is loopback), e.g. mail-admin.example.com")
	fs.Usage = func() {
		fmt.Fprintf(usage, "Usage: mailintaked [flags]\n\nServes the mailintake gRPC API. Every flag can also be set with the environment\nvariable MAILINTAKE_<FLAG> (e.g. MAILINTAKE_DATA_DIR) or in the --config file.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	// Environment variables fill what flags did not set.
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			set[f.Name] = true
		}
	})
	c.SecretKey = getenv(EnvPrefix + "SECRET_KEY")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// The file fills what neither set.
	if c.ConfigFile != "" {
		if err := c.loadFile(fs, set); err != nil {
			return nil, err
		}
	}
	return c, c.validate()
}

func (c *Config) loadFile(fs *flag.FlagSet, set map[string]bool) error {
	var raw map[string]any
	_, err := toml.DecodeFile(c.ConfigFile, &raw)
	if err != nil {
		return fmt.Errorf("config file %s: %w", c.ConfigFile, err)
	}
	for key, val := range raw {
		if key == "plugins" {
			tbl, ok := val.(map[string]any)
			if !ok {
				return fmt.Errorf("config file %s: plugins must be a table of [plugins.<name>] tables", c.ConfigFile)
			}
			for name, v := range tbl {
				p, ok := v.(map[string]any)
				sum, ok2 := p["sha256"].(string)
				if !ok || !ok2 {
					return fmt.Errorf("config file %s: [plugins.%s] needs sha256 = \"<hex>\"", c.ConfigFile, name)
				}
				c.PluginPins[name] = sum
			}
			continue
		}
		name := strings.ReplaceAll(key, "_", "-")
		f := fs.Lookup(name)
		if f == nil || name == "config" {
			return fmt.Errorf("config file %s: unknown key %q", c.ConfigFile, key)
		}
		if set[name] {
			continue
		}
		if err := fs.Set(name, fmt.Sprint(val)); err != nil {
			return fmt.Errorf("config file %s: %s: %w", c.ConfigFile, key, err)
		}
	}
	return nil
}

func (c *Config) validate() error {
	if c.DataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		return fmt.Errorf("--database-url must be a postgres:// URL, not %q", RedactURL(c.DatabaseURL))
	}
	if c.DatabaseURL == "" && (c.ReplicaID != "" || c.AdvertiseAddr != "") {
		return errors.New("--replica-id and --advertise-addr are for several replicas sharing a PostgreSQL database: give --database-url too")
	}
	if c.ReplicaID != "" && !validReplicaID(c.ReplicaID) {
		return fmt.Errorf("--replica-id %q: use 1 to 63 letters, digits, '.', '_' or '-'", c.ReplicaID)
	}
	if c.AdvertiseAddr != "" {
		if host, port, err := net.SplitHostPort(c.AdvertiseAddr); err != nil || host == "" || port == "" || port == "0" {
			return fmt.Errorf("--advertise-addr %q must be host:port, the address other replicas reach this one's --listen port at", c.AdvertiseAddr)
		}
	}
	if c.PeerCA != "" && (c.DatabaseURL == "" || c.TLSCert == "") {
		return errors.New("--peer-ca is for replicas that serve the API with TLS: give --database-url and --tls-cert too")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		return errors.New("--client-ca needs --tls-cert and --tls-key")
	}
	if c.Pprof && c.MetricsListen == "" {
		return errors.New("--pprof needs --metrics-listen")
	}
	if c.HTTPHosts != "" && c.HTTPListen == "" {
		return errors.New("--http-hosts needs --http-listen")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("--log-level must be debug, info, warn or error, not %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	}
	if c.PluginTimeout <= 0 {
		return errors.New("--plugin-timeout must be positive")
	}
	if c.SecretKeyFile == "" {
		c.SecretKeyFile = filepath.Join(c.DataDir, "secret.key")
	}
	if c.PluginDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the plugin directory: %w (give --plugin-dir)", err)
		}
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		c.PluginDir = filepath.Dir(exe)
	}
	return nil
}

// RedactURL returns a database URL with its password replaced, for logs and errors.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// validReplicaID reports whether id can name a replica: 1 to 63 letters, digits, '.', '_' or '-'
// (a Kubernetes pod name fits).
func validReplicaID(id string) bool {
	if id == "" || len(id) > 63 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ReplicaFile is the file in the data directory that keeps a generated replica id.
const ReplicaFile = "replica.id"

// ResolveReplica fills ReplicaID (read from, or generated once into, DataDir/replica.id: a
// restarted replica keeps its id, so it takes its mailboxes back at once) and AdvertiseAddr
// (from the address the API listens on; a wildcard address cannot be reached, so it must then be
// given).
func (c *Config) ResolveReplica(listening string) error {
	if c.ReplicaID == "" {
		path := filepath.Join(c.DataDir, ReplicaFile)
		b, err := os.ReadFile(path)
		switch {
		case err == nil && validReplicaID(strings.TrimSpace(string(b))):
			c.ReplicaID = strings.TrimSpace(string(b))
		case err == nil:
			return fmt.Errorf("%s does not hold a replica id; remove it or give --replica-id", path)
		case errors.Is(err, fs.ErrNotExist):
			host, _ := os.Hostname()
			host = strings.Map(func(r rune) rune {
				if validReplicaID(string(r)) {
					return r
				}
				return '-'
			}, host)
			if len(host) > 40 {
				host = host[:40]
			}
			var rnd [4]byte
			rand.Read(rnd[:])
			c.ReplicaID = strings.Trim(host+"-"+hex.EncodeToString(rnd[:]), "-.")
			if err := os.WriteFile(path, []byte(c.ReplicaID+"\n"), 0o600); err != nil {
				return fmt.Errorf("keeping the replica id: %w", err)
			}
		default:
			return fmt.Errorf("reading the replica id: %w", err)
		}
	}
	if c.AdvertiseAddr == "" {
		host, _, err := net.SplitHostPort(listening)
		if ip := net.ParseIP(host); err != nil || host == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("the API listens on %s, which other replicas cannot reach: give --advertise-addr host:port", listening)
		}
		c.AdvertiseAddr = listening
	}
	return nil
}
