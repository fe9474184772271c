package pop3

import (
	"crypto/x509"
	"errors"
	"net"
	"strconv"
	"time"
)

// Security is how the connection to the POP3 server is protected.
type Security int

// Security modes.
const (
	// TLS is implicit TLS from the first byte (port 995).
	TLS Security = iota + 1
	// StartTLS upgrades a plaintext connection with STLS (RFC 2595, port 110). A server that
	// does not offer STLS is refused before anything is sent: credentials and mail never travel
	// in the clear.
	StartTLS
	// Plaintext never encrypts: only when the mailbox says so. Credentials still need
	// Target.InsecureAuth to be sent.
	Plaintext
)

// String names the mode as the CLI does ("tls", "starttls", "none").
func (s Security) String() string {
	switch s {
	case TLS:
		return "tls"
	case StartTLS:
		return "starttls"
	case Plaintext:
		return "none"
	}
	return "Security(" + strconv.Itoa(int(s)) + ")"
}

// Default deadlines and limits.
const (
	DefaultDialTimeout     = 30 * time.Second
	DefaultCommandTimeout  = 2 * time.Minute
	DefaultTransferTimeout = 10 * time.Minute

	// DefaultMaxLine bounds a response line. RFC 2449 section 4 allows 512 octets; servers
	// put long texts in -ERR lines and long unique-ids in UIDL, so there is slack.
	DefaultMaxLine = 8 << 10
	// DefaultMaxCapabilities bounds the lines of a CAPA response (servers send about ten).
	DefaultMaxCapabilities = 100
	// DefaultMaxMessages bounds the lines of a LIST or UIDL response.
	DefaultMaxMessages = 1_000_000
	// DefaultMaxTop bounds a TOP response.
	DefaultMaxTop = 1 << 20
	// DefaultMaxDiscard bounds what is read and thrown away of a message over its limit.
	DefaultMaxDiscard = 16 << 20
)

// MaxUIDLen is the longest unique-id accepted in a UIDL listing. RFC 1939 says 70 octets;
// some servers send longer ones, and a caller stores them, so the bound is loose but firm.
const MaxUIDLen = 512

// maxCommandLine is RFC 2449 section 4's limit on a command line, CRLF included.
const maxCommandLine = 255

// Limits bound what a server can make the client read or hold. Zero fields take the defaults.
type Limits struct {
	// MaxLine bounds one response line (status lines, CAPA, LIST and UIDL lines, SASL
	// challenges) in bytes, without its line ending; zero means DefaultMaxLine. Message lines
	// (RETR, TOP) are bounded by the message's limit instead.
	MaxLine int
	// MaxCapabilities bounds the lines of a CAPA response; zero means DefaultMaxCapabilities.
	MaxCapabilities int
	// MaxMessages bounds the lines of a LIST or UIDL response; zero means DefaultMaxMessages.
	MaxMessages int
	// MaxTop bounds a TOP response in bytes; zero means DefaultMaxTop.
	MaxTop int64
	// MaxDiscard bounds the bytes of a message over its limit that are read and thrown away
	// so that the connection (and the deletions marked on it) survives; zero means
	// DefaultMaxDiscard, a negative value closes the connection as soon as the limit is passed.
	MaxDiscard int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxLine <= 0 {
		l.MaxLine = DefaultMaxLine
	}
	if l.MaxCapabilities <= 0 {
		l.MaxCapabilities = DefaultMaxCapabilities
	}
	if l.MaxMessages <= 0 {
		l.MaxMessages = DefaultMaxMessages
	}
	if l.MaxTop <= 0 {
		l.MaxTop = DefaultMaxTop
	}
	switch {
	case l.MaxDiscard == 0:
		l.MaxDiscard = DefaultMaxDiscard
	case l.MaxDiscard < 0:
		l.MaxDiscard = 0
	}
	return l
}

// Target is the POP3 server to connect to.
type Target struct {
	Host     string
	Port     int
	Security Security
	// RootCAs, when set, replaces the system roots (CertPool builds one from a mailbox's CA
	// PEM); nil means the system roots.
	RootCAs *x509.CertPool
	// SkipVerify disables certificate verification.
	SkipVerify bool
	// InsecureAuth lets Authenticate send a credential over a connection that is not
	// encrypted (Security Plaintext). Without it a password or token is never sent in the
	// clear, whatever Security says.
	InsecureAuth bool
	// DialTimeout bounds DNS, TCP, TLS, the greeting, STLS and CAPA together; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// CommandTimeout bounds each command with a one-line answer (and CAPA, and each step of
	// a login); zero means DefaultCommandTimeout.
	CommandTimeout time.Duration
	// TransferTimeout bounds each command whose answer is a list or a message (LIST, UIDL,
	// TOP, RETR) from the command to the final dot; zero means DefaultTransferTimeout.
	TransferTimeout time.Duration
	// Limits bound lines, lists and discarded bytes.
	Limits Limits
	// Allow, when set, is asked right before every command is sent, QUIT included (QUIT is
	// what deletes): false refuses it with ErrNotAllowed and sends nothing. A replica that may
	// have lost the mailbox's lease sends nothing more to the server.
	Allow func() bool
}

// Addr returns host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

func (t Target) withDefaults() Target {
	if t.DialTimeout <= 0 {
		t.DialTimeout = DefaultDialTimeout
	}
	if t.CommandTimeout <= 0 {
		t.CommandTimeout = DefaultCommandTimeout
	}
	if t.TransferTimeout <= 0 {
		t.TransferTimeout = DefaultTransferTimeout
	}
	if t.Security == 0 {
		t.Security = TLS
	}
	t.Limits = t.Limits.withDefaults()
	return t
}

// CertPool returns the system roots plus the certificates of a CA PEM (a mailbox's ca_pem), as
// the IMAP side builds its pool.
func CertPool(pem []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("the CA PEM holds no usable certificate")
	}
	return pool, nil
}

// StepKind names a step of a connection, for a connection test.
type StepKind int

// Steps, in order.
const (
	StepDNS StepKind = iota + 1
	StepTCP
	StepTLS
	StepGreeting
	// StepCapabilities is CAPA (after STLS, the second one).
	StepCapabilities
	StepAuth
	// StepMaildrop is STAT after the login: the maildrop could be opened (and locked).
	StepMaildrop
)

// String names the step ("DNS", "CAPA", "STAT").
func (k StepKind) String() string {
	switch k {
	case StepDNS:
		return "DNS"
	case StepTCP:
		return "TCP"
	case StepTLS:
		return "TLS"
	case StepGreeting:
		return "greeting"
	case StepCapabilities:
		return "CAPA"
	case StepAuth:
		return "login"
	case StepMaildrop:
		return "STAT"
	}
	return "StepKind(" + strconv.Itoa(int(k)) + ")"
}

// Step is the outcome of one step of Dial (and of the later Authenticate and Stat), as
// imapconn.Step is for IMAP.
type Step struct {
	Kind     StepKind
	Duration time.Duration
	Detail   string
	Err      error
}
