// Package secrets encrypts secrets at rest and keeps them out of logs.
//
// A [Box] seals values with AES-256-GCM under a 32-byte key that lives outside the database (a key
// file, or an environment variable). Each sealed value is bound to what it belongs to (the
// additional data, e.g. "mailbox/<id>/password"), so a ciphertext copied onto another row does not
// decrypt. [Secret] is a string that prints and logs as REDACTED.
package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the key length in bytes (AES-256).
const KeySize = 32

// version is the first byte of every sealed value, so the format and key can change later.
const version byte = 1

// Redacted is what a Secret prints as.
const Redacted = "REDACTED"

// Secret is a string that never prints, formats or logs its value. Call Reveal where the
// value is really needed.
type Secret string

// Reveal returns the value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return Redacted }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalText keeps the value out of JSON and other text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// ErrDecrypt is returned when a value does not decrypt: a wrong key, a corrupted value, or a
// value moved to another owner.
var ErrDecrypt = errors.New("secrets: value does not decrypt with this key")

// Box seals and opens values.
type Box struct {
	aead cipher.AEAD
	key  []byte // kept only to derive keys for other purposes (Derive)
}

// NewBox returns a Box for a 32-byte key.
func NewBox(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secrets: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead, key: bytes.Clone(key)}, nil
}

// Derive returns a 32-byte key for purpose, derived from the box's key with HKDF-SHA256: every
// process given the same secret key derives the same one (replicas authenticate each other with
// it), and nothing derived reveals the key itself or another purpose's key.
func (b *Box) Derive(purpose string) []byte {
	k, err := hkdf.Key(sha256.New, b.key, nil, "mailintake "+purpose, KeySize)
	if err != nil {
		panic(err) // only for lengths HKDF cannot produce
	}
	return k
}

// Seal encrypts plaintext bound to owner.
func (b *Box) Seal(plaintext []byte, owner string) []byte {
	out := make([]byte, 1+b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		panic("secrets: no randomness: " + err.Error())
	}
	return b.aead.Seal(out, out[1:1+b.aead.NonceSize()], plaintext, []byte(owner))
}

// Open decrypts a value sealed for owner.
func (b *Box) Open(sealed []byte, owner string) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < 1+n+b.aead.Overhead() || sealed[0] != version {
		return nil, ErrDecrypt
	}
	pt, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(owner))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// ParseKey reads a key written as 64 hex digits or as standard base64 of 32 bytes.
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if k, err := hex.DecodeString(text); err == nil && len(k) == KeySize {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(text); err == nil && len(k) == KeySize {
		return k, nil
	}
	return nil, fmt.Errorf("secrets: a key is %d bytes written as %d hex digits or as base64", KeySize, 2*KeySize)
}

// LoadOrCreateKeyFile reads the key in path, or, when the file does not exist, generates a key
// and writes it there with mode 0600. created reports whether it did.
func LoadOrCreateKeyFile(path string) (key []byte, created bool, err error) {
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseKey(string(data))
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, err
	}
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		return nil, false, err
	}
	if err := f.Close(); err != nil {
		return nil, false, err
	}
	return k, true, nil
}
