package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/plugins/authplugin"
)

// RefreshMargin is how long before its expiry a cached credential is replaced, at most. Shorter
// credentials are replaced when half their lifetime has passed.
const RefreshMargin = 5 * time.Minute

type cacheEntry struct {
	fingerprint [32]byte
	cred        authplugin.Credential
	refreshAt   time.Time // zero: valid until invalidated
	issued      time.Time
	health      *authplugin.Health
}

// Health is what the host knows of a mailbox's credential lifecycle.
type Health struct {
	Issued time.Time          // when the cached credential was issued
	Expiry time.Time          // when it expires (zero: it does not)
	Token  *authplugin.Health // what the provider reported, or nil
}

// Health returns a mailbox's credential lifecycle, from the cache.
func (h *Host) Health(mailboxID string) (Health, bool) {
	h.cacheMu.Lock()
	defer h.cacheMu.Unlock()
	e, ok := h.cache[mailboxID]
	if !ok {
		return Health{}, false
	}
	return Health{Issued: e.issued, Expiry: e.cred.Expiry, Token: e.health}, true
}

// fingerprint identifies what a credential was issued for, so a changed config, secret or
// username never reuses it.
func fingerprint(provider string, a authplugin.Account) [32]byte {
	h := sha256.New()
	w := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	w(provider)
	w(a.MailboxID)
	w(a.Protocol)
	w(a.Host)
	w(fmt.Sprint(a.Port))
	w(a.Username)
	for _, m := range []map[string]string{a.Config, a.Secrets} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		w(fmt.Sprint(len(keys)))
		for _, k := range keys {
			w(k)
			w(m[k])
		}
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (h *Host) flight(mailboxID string) *sync.Mutex {
	h.cacheMu.Lock()
	defer h.cacheMu.Unlock()
	m, ok := h.flights[mailboxID]
	if !ok {
		m = &sync.Mutex{}
		h.flights[mailboxID] = m
	}
	return m
}

// Credential returns a credential for the account from the cache, or from the provider. Calls
// for the same mailbox are single-flight. A provider's new state is stored before the credential
// is returned. force skips the cache (the mail server refused the cached credential).
func (h *Host) Credential(ctx context.Context, provider string, acct authplugin.Account, force bool) (authplugin.Credential, error) {
	fp := fingerprint(provider, acct)
	f := h.flight(acct.MailboxID)
	f.Lock()
	defer f.Unlock()

	h.cacheMu.Lock()
	cached, haveCached := h.cache[cacheKey(acct)]
	h.cacheMu.Unlock()
	haveCached = haveCached && cached.fingerprint == fp
	if !force && haveCached && (cached.refreshAt.IsZero() || h.opts.Now().Before(cached.refreshAt)) {
		return cached.cred, nil
	}

	var res authplugin.IssueResult
	var state []byte
	err := h.call(ctx, provider, func(ctx context.Context, p *authplugin.Client) error {
		var err error
		state, err = h.state(ctx, acct.MailboxID)
		if err != nil {
			return fmt.Errorf("loading provider state: %w", err)
		}
		res, err = p.IssueCredential(ctx, authplugin.Request{Account: acct, State: state, ForceRefresh: force})
		return err
	})
	if err == nil {
		err = usable(provider, res.Credential, h.opts.Now())
	}
	if err != nil {
		if !force && haveCached && errors.Is(err, ErrPluginFailed) && !cached.cred.Expiry.IsZero() && h.opts.Now().Before(cached.cred.Expiry) {
			// The refresh failed because the plugin did, not because the provider refused: the
			// credential in hand is still valid, so sessions keep working until it lapses.
			h.opts.Logger.Warn("auth provider failed; using the cached credential until it expires",
				"provider", provider, "mailbox_id", acct.MailboxID, "expires", cached.cred.Expiry, "err", err)
			return cached.cred, nil
		}
		h.cacheMu.Lock()
		delete(h.cache, cacheKey(acct)) // this protocol's only: the other's may still be good
		h.cacheMu.Unlock()
		return authplugin.Credential{}, err
	}
	if res.StateChanged && h.opts.State != nil && acct.MailboxID != "" {
		// Compare-and-swap against the state the provider was given: if another process
		// stored a newer one meanwhile (another replica refreshed, a connection test rotated
		// the refresh token), that one stays; the credential in hand is still good to use.
		err := h.opts.State.SwapProviderState(ctx, acct.MailboxID, state, res.State)
		switch {
		case errors.Is(err, store.ErrConflict):
			h.opts.Logger.Info("provider state changed while this credential was issued; keeping the newer state",
				"provider", provider, "mailbox_id", acct.MailboxID)
		case err != nil:
			return authplugin.Credential{}, fmt.Errorf("storing provider state: %w", err)
		}
	}
	now := h.opts.Now()
	entry := &cacheEntry{fingerprint: fp, cred: res.Credential, issued: now, health: res.Health}
	if !res.Credential.Expiry.IsZero() {
		margin := min(RefreshMargin, res.Credential.Expiry.Sub(now)/2)
		entry.refreshAt = res.Credential.Expiry.Add(-margin)
	}
	if acct.MailboxID != "" {
		h.cacheMu.Lock()
		h.cache[cacheKey(acct)] = entry
		h.cacheMu.Unlock()
	}
	return res.Credential, nil
}

// Mechanisms are the SASL mechanisms a credential may name: those the mail connections speak.
var Mechanisms = []string{"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"}

// usable checks a credential a provider issued before anything uses it: a provider that answers
// garbage is a plugin failure with a clear reason, not a mail server error later. The secret is
// never part of the reason.
func usable(provider string, c authplugin.Credential, now time.Time) error {
	var why string
	switch {
	case !slices.Contains(Mechanisms, c.Mechanism):
		why = fmt.Sprintf("SASL mechanism %.40q is not one of %s", c.Mechanism, strings.Join(Mechanisms, ", "))
	case c.Identity == "":
		why = "it has no identity"
	case c.Secret == "":
		why = "it has no secret"
	case !c.Expiry.IsZero() && !c.Expiry.After(now):
		why = "it expired at " + c.Expiry.UTC().Format(time.RFC3339)
	default:
		return nil
	}
	return fmt.Errorf("%w: %s issued an unusable credential: %s", ErrPluginFailed, provider, why)
}

// cacheKey is where a credential is cached: per mailbox and protocol, so that a mailbox that
// reads over IMAP and sends over SMTP keeps both credentials (with one cache entry per mailbox,
// every send and every reconnection after it asked the provider again, an OAuth refresh each).
// The reading protocol's entry is the mailbox id alone, which Health reads.
func cacheKey(acct authplugin.Account) string {
	if acct.Protocol == "smtp" {
		return acct.MailboxID + "\x00smtp"
	}
	return acct.MailboxID
}

// Invalidate drops a mailbox's cached credentials.
func (h *Host) Invalidate(mailboxID string) {
	h.cacheMu.Lock()
	delete(h.cache, mailboxID)
	delete(h.cache, mailboxID+"\x00smtp")
	h.cacheMu.Unlock()
}

// Forget drops everything the host keeps for a deleted mailbox.
func (h *Host) Forget(mailboxID string) {
	h.cacheMu.Lock()
	delete(h.cache, mailboxID)
	delete(h.cache, mailboxID+"\x00smtp")
	delete(h.flights, mailboxID)
	h.cacheMu.Unlock()
}
