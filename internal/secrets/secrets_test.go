package secrets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBoxRoundTripAndBinding(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	b, err := NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	sealed := b.Seal([]byte("hunter2"), "mailbox/a/password")
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatalf("sealed value contains the plaintext")
	}
	got, err := b.Open(sealed, "mailbox/a/password")
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("Open = %q, %v; want hunter2, nil", got, err)
	}
	if _, err := b.Open(sealed, "mailbox/b/password"); err != ErrDecrypt {
		t.Errorf("Open with another owner = %v, want ErrDecrypt", err)
	}
	other, _ := NewBox(bytes.Repeat([]byte{8}, KeySize))
	if _, err := other.Open(sealed, "mailbox/a/password"); err != ErrDecrypt {
		t.Errorf("Open with another key = %v, want ErrDecrypt", err)
	}
	if _, err := b.Open(sealed[:5], "mailbox/a/password"); err != ErrDecrypt {
		t.Errorf("Open of a truncated value = %v, want ErrDecrypt", err)
	}
	if bytes.Equal(b.Seal([]byte("x"), "o"), b.Seal([]byte("x"), "o")) {
		t.Errorf("two seals of the same value are equal: nonce reused")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2")
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("x", "pw", s)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "pw", s)
	j, _ := json.Marshal(struct{ P Secret }{s})
	out := buf.String() + fmt.Sprint(s) + fmt.Sprintf("%v %+v %#v %s", s, s, s, s) + string(j)
	if strings.Contains(out, "hunter2") {
		t.Fatalf("secret value printed: %s", out)
	}
	if s.Reveal() != "hunter2" {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secret.key")
	k1, created, err := LoadOrCreateKeyFile(path)
	if err != nil || !created || len(k1) != KeySize {
		t.Fatalf("first call = %d bytes, created %v, %v", len(k1), created, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", st.Mode().Perm())
	}
	k2, created, err := LoadOrCreateKeyFile(path)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second call: created %v, err %v, same key %v", created, err, bytes.Equal(k1, k2))
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKeyFile(path); err == nil {
		t.Errorf("a malformed key file was accepted")
	}
}

func TestParseKey(t *testing.T) {
	for _, in := range []string{strings.Repeat("ab", 32), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="} {
		if _, err := ParseKey(in); err != nil {
			t.Errorf("ParseKey(%q) = %v", in, err)
		}
	}
	if _, err := ParseKey("abcd"); err == nil {
		t.Errorf("ParseKey(abcd) accepted a short key")
	}
}

func TestDeriveIsStablePerKeyAndPurpose(t *testing.T) {
	k1 := make([]byte, KeySize)
	k2 := make([]byte, KeySize)
	k2[0] = 1
	a, _ := NewBox(k1)
	a2, _ := NewBox(k1)
	b, _ := NewBox(k2)
	if !bytes.Equal(a.Derive("x"), a2.Derive("x")) {
		t.Fatal("the same key and purpose derived different keys")
	}
	if bytes.Equal(a.Derive("x"), a.Derive("y")) || bytes.Equal(a.Derive("x"), b.Derive("x")) {
		t.Fatal("another purpose or key derived the same key")
	}
	if bytes.Equal(a.Derive("x"), k1) || len(a.Derive("x")) != KeySize {
		t.Fatal("derived key is the key itself or has the wrong size")
	}
}
