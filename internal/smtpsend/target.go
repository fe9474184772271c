package smtpsend

import (
	"crypto/x509"
	"errors"
	"net"
	"strconv"
	"time"
)

// Security is how the connection to the submission server is protected.
type Security int

// Security modes.
const (
	// TLS is implicit TLS from the first byte (port 465).
	TLS Security = iota + 1
	// StartTLS upgrades a plaintext connection with STARTTLS (port 587); a server that does not
	// offer STARTTLS is refused, so credentials and mail never travel in the clear.
	StartTLS
	// Plaintext never encrypts: only when the mailbox says so (a trusted local relay).
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

// Default deadlines.
const (
	DefaultDialTimeout    = 30 * time.Second
	DefaultCommandTimeout = 2 * time.Minute
	// DefaultFinalTimeout is RFC 5321's (section 4.5.3.2.6) wait for the reply to the final dot.
	DefaultFinalTimeout = 10 * time.Minute
)

// Target is the submission server to connect to.
type Target struct {
	Host     string
	Port     int
	Security Security
	// RootCAs, when set, replaces the system roots (CertPool builds one from a mailbox's CA
	// PEM); nil means the system roots.
	RootCAs *x509.CertPool
	// SkipVerify disables certificate verification.
	SkipVerify bool
	// LocalName is the name given in EHLO; empty means this host's name when it is a domain
	// name, else the connection's local address as an address literal ("[192.0.2.1]").
	LocalName string
	// DialTimeout bounds DNS, TCP, TLS, the greeting, STARTTLS and EHLO together; zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// CommandTimeout bounds each command's reply, and each write of the message while it is
	// sent (so a server that stops reading is noticed however large the message); zero means
	// DefaultCommandTimeout.
	CommandTimeout time.Duration
	// FinalTimeout bounds the wait for the reply after the final dot; zero means
	// DefaultFinalTimeout. A timeout there makes the send Unknown.
	FinalTimeout time.Duration
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
	if t.FinalTimeout <= 0 {
		t.FinalTimeout = DefaultFinalTimeout
	}
	if t.Security == 0 {
		t.Security = StartTLS
	}
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

// StepKind names a step of a connection or a send.
type StepKind int

// Steps, in order.
const (
	StepDNS StepKind = iota + 1
	StepTCP
	StepTLS
	StepGreeting
	StepHello
	StepAuth
	StepMail
	StepRcpt
	StepData
	// StepEndOfData is the wait for the reply after the final dot.
	StepEndOfData
)

// String names the step as SMTP does ("MAIL FROM", "end of data").
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
	case StepHello:
		return "EHLO"
	case StepAuth:
		return "AUTH"
	case StepMail:
		return "MAIL FROM"
	case StepRcpt:
		return "RCPT TO"
	case StepData:
		return "DATA"
	case StepEndOfData:
		return "end of data"
	}
	return "StepKind(" + strconv.Itoa(int(k)) + ")"
}

// Step is the outcome of one step of Dial and Authenticate, for a connection test.
type Step struct {
	Kind     StepKind
	Duration time.Duration
	Detail   string
	Err      error
}
