package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/mailintake/mailintake/internal/secrets"
)

func box(t *testing.T, b byte) *secrets.Box {
	t.Helper()
	bx, err := secrets.NewBox(bytes.Repeat([]byte{b}, secrets.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return bx
}

func incoming(t *testing.T, k *Key) context.Context {
	t.Helper()
	md, err := k.GetRequestMetadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return metadata.NewIncomingContext(context.Background(), metadata.New(md))
}

func TestReplicaCredential(t *testing.T) {
	a := NewKey(box(t, 1), "r1")
	b := NewKey(box(t, 1), "r2")
	if id, err := b.Verify(incoming(t, a)); err != nil || id != "r1" {
		t.Fatalf("a replica with the same secret key: id %q, err %v", id, err)
	}
	other := NewKey(box(t, 2), "r9")
	if _, err := b.Verify(incoming(t, other)); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("a replica with another secret key was accepted: %v", err)
	}
	if _, err := b.Verify(context.Background()); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("a call without the credential was accepted: %v", err)
	}
	// An API token, or a credential renamed to another replica, is refused.
	md, _ := a.GetRequestMetadata(context.Background())
	forged := strings.Replace(md[MetadataKey], "r1|", "r3|", 1)
	for _, v := range []string{"mit_0123456789abcdef_secret", forged} {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(MetadataKey, v))
		if _, err := b.Verify(ctx); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("credential %q accepted", v)
		}
	}
	// A credential made long ago (replayed) is refused.
	old := time.Now().Add(-time.Hour).Unix()
	stale := fmt.Sprintf("r1|%s|%s", strconv.FormatInt(old, 10), a.mac("r1", old))
	if _, err := b.Verify(metadata.NewIncomingContext(context.Background(), metadata.Pairs(MetadataKey, stale))); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("an hour-old credential was accepted: %v", err)
	}
}
