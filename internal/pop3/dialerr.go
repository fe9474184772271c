package pop3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
)

// dialError finishes a failure of Dial's step kind: the caller's cancellation stays itself,
// and running out of the dial's time is a *TimeoutError for the step.
func dialError(parent context.Context, t Target, kind StepKind, err error) error {
	if parent.Err() != nil {
		return fmt.Errorf("POP3 %s: %w", kind, parent.Err())
	}
	var te *TimeoutError
	if errors.As(err, &te) || errors.Is(err, context.DeadlineExceeded) {
		return &TimeoutError{Command: kind.String(), After: t.DialTimeout}
	}
	return err
}

func describeDNS(host string, err error) error {
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return fmt.Errorf("the host name %q does not exist (DNS: no such host): %w", host, err)
	}
	return fmt.Errorf("resolving %q: %w", host, err)
}

func describeTCP(t Target, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from %s within %s (a firewall, or the wrong port: POP3 is 995 with TLS, 110 with STLS): %w", t.Addr(), t.DialTimeout, err)
	case strings.Contains(err.Error(), "connection refused"):
		return fmt.Errorf("connection to %s refused: nothing listens on port %d (POP3 is 995 with TLS, 110 with STLS): %w", t.Addr(), t.Port, err)
	}
	return fmt.Errorf("connecting to %s: %w", t.Addr(), err)
}

// describeTLS names certificate problems in words an admin can act on.
func describeTLS(t Target, err error) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("the server's certificate is not signed by a trusted authority (self-signed, or a private CA): give its CA certificate (ca_pem / --ca-file): %w", err)
	case errors.As(err, &he):
		return fmt.Errorf("the server's certificate is not valid for %q: %w", t.Host, err)
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return fmt.Errorf("the server's certificate has expired or is not yet valid: %w", err)
	case errors.As(err, &rh):
		return fmt.Errorf("the server at %s does not speak TLS on this port (POP3 with TLS is 995; on 110 use STLS): %w", t.Addr(), err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("TLS handshake with %s timed out: %w", t.Addr(), err)
	}
	return fmt.Errorf("TLS with %s failed: %w", t.Addr(), err)
}

func tlsDetail(st tls.ConnectionState) string {
	v := map[uint16]string{tls.VersionTLS12: "TLS 1.2", tls.VersionTLS13: "TLS 1.3"}[st.Version]
	if v == "" {
		v = fmt.Sprintf("TLS 0x%x", st.Version)
	}
	if len(st.PeerCertificates) > 0 {
		c := st.PeerCertificates[0]
		names := strings.Join(c.DNSNames, ", ")
		if names == "" {
			names = c.Subject.CommonName
		}
		return fmt.Sprintf("%s, certificate for %s issued by %s, valid until %s", v, names, c.Issuer.CommonName, c.NotAfter.Format("2006-01-02"))
	}
	return v
}
