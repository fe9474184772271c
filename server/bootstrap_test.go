package server

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/store/sqlite"
)

// On a shared database the admin token is created once per cluster: the first replica writes it,
// a replica started later with an empty data directory writes none and revokes nothing. Without
// sharing, deleting the file and restarting rotates the token, as before.
func TestAdminTokenOncePerCluster(t *testing.T) {
	ctx := context.Background()
	box, _ := secrets.NewBox(bytes.Repeat([]byte{5}, secrets.KeySize))
	st, err := sqlite.Open(ctx, t.TempDir(), box)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	first := filepath.Join(t.TempDir(), AdminTokenFile)
	if created, err := EnsureAdminToken(ctx, st, first, now, true); err != nil || !created {
		t.Fatalf("first replica: created %v, %v", created, err)
	}
	tok, _ := os.ReadFile(first)
	second := filepath.Join(t.TempDir(), AdminTokenFile)
	if created, err := EnsureAdminToken(ctx, st, second, now, true); created || !errors.Is(err, ErrAdminTokenElsewhere) {
		t.Fatalf("second replica: created %v, %v", created, err)
	}
	if _, err := os.Stat(second); !os.IsNotExist(err) {
		t.Errorf("the second replica wrote an admin token file: %v", err)
	}
	if p, err := VerifyToken(ctx, st, strings.TrimSpace(string(tok)), now); err != nil || !p.Admin {
		t.Errorf("the first replica's admin token after the second started: %v, %v", p, err)
	}
	// The first replica restarted with its file: nothing changes.
	if created, err := EnsureAdminToken(ctx, st, first, now, true); err != nil || created {
		t.Errorf("first replica restarted: created %v, %v", created, err)
	}
	// Not shared: a missing file rotates the token.
	os.Remove(first)
	if created, err := EnsureAdminToken(ctx, st, first, now, false); err != nil || !created {
		t.Fatalf("rotation: created %v, %v", created, err)
	}
	if _, err := VerifyToken(ctx, st, strings.TrimSpace(string(tok)), now); err == nil {
		t.Errorf("the old admin token still works after a rotation")
	}
}
