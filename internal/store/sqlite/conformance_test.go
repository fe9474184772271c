package sqlite

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/storetest"
)

// TestConformance runs the store conformance suite, which the PostgreSQL store runs too.
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	dirs := map[store.Store]string{}
	open := func(t *testing.T) store.Store {
		box, err := secrets.NewBox(bytes.Repeat([]byte{1}, secrets.KeySize))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		s, err := Open(context.Background(), dir, box)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		mu.Lock()
		dirs[s] = dir
		mu.Unlock()
		return s
	}
	// What the store keeps at rest: every file of its data directory (the database and its WAL).
	raw := func(t *testing.T, s store.Store) []byte {
		mu.Lock()
		dir := dirs[s]
		mu.Unlock()
		var all []byte
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			all = append(all, b...)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return all
	}
	storetest.Run(t, open, storetest.WithRaw(raw))
}
