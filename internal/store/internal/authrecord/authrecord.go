// Package authrecord is the plaintext the stores seal for a mailbox's pending interactive sign-in
// (store.PendingAuthorization): its State and its Handle in one value, so that both are sealed
// together, bound to the mailbox, and a row holds nothing of either in the clear. The SQLite and
// the PostgreSQL store use the same encoding.
//
// The encoding is a version byte (1), the length of State as a uvarint, State, then Handle to
// the end.
package authrecord

import (
	"encoding/binary"
	"errors"
)

// version is the first byte of every record, so the encoding can change later.
const version byte = 1

// ErrMalformed is returned by Unmarshal for a value that is not a record of this version.
var ErrMalformed = errors.New("malformed authorization record")

// Marshal encodes state and handle as one value.
func Marshal(state []byte, handle string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(state)+len(handle))
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(len(state)))
	b = append(b, state...)
	return append(b, handle...)
}

// Unmarshal decodes a value Marshal made. The state it returns is a new slice (nil when it was
// empty), not part of b.
func Unmarshal(b []byte) (state []byte, handle string, err error) {
	if len(b) == 0 || b[0] != version {
		return nil, "", ErrMalformed
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return nil, "", ErrMalformed
	}
	rest := b[1+k:]
	if n > 0 {
		state = append([]byte(nil), rest[:n]...)
	}
	return state, string(rest[n:]), nil
}
