package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/mailintake/mailintake/internal/store"
)

// AdminTokenFile is the admin token's file name in the data directory.
const AdminTokenFile = "admin.token"

// ErrAdminTokenElsewhere: on a shared database, the cluster's admin token was written by the
// replica that started first, to its data directory; this replica wrote none.
var ErrAdminTokenElsewhere = errors.New("the cluster's admin token was written to the admin.token of the first replica that started on this database; this replica wrote none (copy that file to use the admin token here)")

// EnsureAdminToken makes sure path holds a valid admin token. When the file is missing or holds
// a token the store does not know, every existing admin token is revoked and a new one is
// written with mode 0600: deleting the file and restarting rotates the admin token.
//
// On a database that several replicas share (shared), the admin token is created once per
// cluster: by the first replica ever to start on the database (store.ClaimOnce), which writes it
// to its own path; every other replica writes none and revokes nothing (it returns false with
// ErrAdminTokenElsewhere when its path holds no valid token), so a replica started with a new data
// directory cannot lock the others out.
func EnsureAdminToken(ctx context.Context, st store.Store, path string, now time.Time, shared bool) (created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		p, verr := VerifyToken(ctx, st, strings.TrimSpace(string(data)), now)
		if verr == nil && p.Admin {
			return false, nil
		}
		if verr != nil && !errors.Is(verr, errBadToken) {
			return false, verr
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	if shared {
		first, err := st.ClaimOnce(ctx, "admin-token")
		if err != nil {
			return false, err
		}
		if !first {
			return false, ErrAdminTokenElsewhere
		}
	}
	toks, err := st.ListTokens(ctx, false)
	if err != nil {
		return false, err
	}
	for _, t := range toks {
		if t.Admin {
			if err := st.RevokeToken(ctx, t.ID, now); err != nil {
				return false, err
			}
		}
	}
	_, value, err := NewToken(ctx, st, "admin", "", true, now, 0)
	if err != nil {
		return false, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(value+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("writing admin token: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("writing admin token: %w", err)
	}
	return true, nil
}
