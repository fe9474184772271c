// Package relay lets any replica serve any consumer when several replicas share one PostgreSQL
// database: the replica a consumer is connected to (the edge) fans in the messages of mailboxes
// other replicas own over one ReplicaService.Relay stream per owner, with credits so that the
// consumer's max_in_flight holds across replicas; acknowledgements, raw-message fetches and status
// are forwarded to the mailbox's owner.
//
// Replicas reach each other on their API port at their advertised address. Every ReplicaService
// call carries a credential made with a key derived from the cluster's shared secret key (no
// further setting); API tokens are refused on it, and the credential is refused on the API.
package relay

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/mailintake/mailintake/internal/secrets"
)

// MetadataKey is the gRPC metadata key that carries the replica credential.
const MetadataKey = "x-mailintake-replica"

// ServicePrefix starts the full method name of every ReplicaService call.
const ServicePrefix = "/mailintake.replica.v1.ReplicaService/"

// maxSkew is how far a credential's time may be from the receiver's clock.
const maxSkew = 5 * time.Minute

// Key authenticates replicas to each other.
type Key struct {
	key []byte
	id  string // this replica's id
}

// NewKey derives the replica key from the cluster's secret key.
func NewKey(box *secrets.Box, replicaID string) *Key {
	return &Key{key: box.Derive("replica relay v1"), id: replicaID}
}

func (k *Key) mac(id string, unix int64) string {
	m := hmac.New(sha256.New, k.key)
	fmt.Fprintf(m, "mailintake replica v1|%s|%d", id, unix)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// GetRequestMetadata implements credentials.PerRPCCredentials: a fresh credential per call.
func (k *Key) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	now := time.Now().Unix()
	return map[string]string{MetadataKey: k.id + "|" + strconv.FormatInt(now, 10) + "|" + k.mac(k.id, now)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. Replicas talk plaintext
// only where the API itself is served without TLS (loopback, or --insecure).
func (k *Key) RequireTransportSecurity() bool { return false }

// ErrUnauthenticated is returned by Verify for a call without a valid replica credential.
var ErrUnauthenticated = errors.New("not a replica of this cluster (the replica credential is missing or was made with another secret key)")

// Verify checks the replica credential of an incoming call and returns the caller's replica id.
func (k *Key) Verify(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(MetadataKey)
	if len(vals) != 1 {
		return "", ErrUnauthenticated
	}
	parts := strings.Split(vals[0], "|")
	if len(parts) != 3 {
		return "", ErrUnauthenticated
	}
	unix, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return "", ErrUnauthenticated
	}
	if d := time.Since(time.Unix(unix, 0)); d > maxSkew || d < -maxSkew {
		return "", fmt.Errorf("%w: its clock is %s off this replica's", ErrUnauthenticated, d.Round(time.Second))
	}
	if !hmac.Equal([]byte(parts[2]), []byte(k.mac(parts[0], unix))) {
		return "", ErrUnauthenticated
	}
	return parts[0], nil
}
