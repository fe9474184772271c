// Package websession keeps the admin web page's sign-ins on the server: a session holds the API
// token the user signed in with, and the browser holds only a random id in a cookie that
// scripts cannot read (HttpOnly), that no other site's request carries (SameSite=Strict), and
// that travels only over HTTPS when the page is served with TLS (Secure, and the __Host- name).
//
// Sessions live in memory: a restart signs everyone out. A session ends after IdleTimeout
// without a request, after MaxAge in any case, at sign-out, or when the token stops working.
package websession

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultIdleTimeout = 12 * time.Hour
	DefaultMaxAge      = 7 * 24 * time.Hour
	DefaultMaxSessions = 1000
)

// Session is one sign-in. Data is the page's own per-session state.
type Session[T any] struct {
	// Token is the API token the user signed in with; every API call of the page uses it.
	Token string
	// Admin is set for the admin token.
	Admin bool
	// TokenID is the token's id (the part before its secret), for display.
	TokenID string
	// Tenant is the tenant of a tenant token, when known.
	Tenant string
	Data   T

	key      string // SHA-256 of the cookie value
	created  time.Time
	lastUsed time.Time
}

// Options configure a Store.
type Options struct {
	// Secure marks the cookie Secure and names it with the __Host- prefix (the page is served
	// over HTTPS).
	Secure      bool
	IdleTimeout time.Duration
	MaxAge      time.Duration
	// MaxSessions bounds the sessions held; signing in beyond it ends the least recently used.
	MaxSessions int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Store holds the sessions.
type Store[T any] struct {
	opts Options
	mu   sync.Mutex
	byID map[string]*Session[T]
}

// New returns an empty store.
func New[T any](opts Options) *Store[T] {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store[T]{opts: opts, byID: map[string]*Session[T]{}}
}

// CookieName is the session cookie's name.
func (s *Store[T]) CookieName() string {
	if s.opts.Secure {
		return "__Host-mailintake_session"
	}
	return "mailintake_session"
}

func hashID(v string) string {
	sum := sha256.Sum256([]byte(v))
	return string(sum[:])
}

// Create starts a session for sess (its Token, Admin, TokenID, Tenant and Data) and sets its
// cookie on w. A fresh id is drawn at every sign-in, so an id planted before it is worthless.
func (s *Store[T]) Create(w http.ResponseWriter, sess *Session[T]) {
	var b [32]byte
	rand.Read(b[:])
	value := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.opts.Now()
	sess.key, sess.created, sess.lastUsed = hashID(value), now, now

	s.mu.Lock()
	s.sweepLocked(now)
	for len(s.byID) >= s.opts.MaxSessions {
		var oldest *Session[T]
		for _, o := range s.byID {
			if oldest == nil || o.lastUsed.Before(oldest.lastUsed) {
				oldest = o
			}
		}
		delete(s.byID, oldest.key)
	}
	s.byID[sess.key] = sess
	s.mu.Unlock()

	http.SetCookie(w, s.cookie(value, int(s.opts.MaxAge/time.Second)))
}

func (s *Store[T]) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: s.CookieName(), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.opts.Secure}
}

// Get returns the request's session, or nil when it has none that is still valid. It counts
// as a use of the session.
func (s *Store[T]) Get(r *http.Request) *Session[T] {
	c, err := r.Cookie(s.CookieName())
	if err != nil || c.Value == "" {
		return nil
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.byID[hashID(c.Value)]
	if sess == nil {
		return nil
	}
	if s.expired(sess, now) {
		delete(s.byID, sess.key)
		return nil
	}
	sess.lastUsed = now
	return sess
}

func (s *Store[T]) expired(sess *Session[T], now time.Time) bool {
	return now.Sub(sess.lastUsed) > s.opts.IdleTimeout || now.Sub(sess.created) > s.opts.MaxAge
}

func (s *Store[T]) sweepLocked(now time.Time) {
	for k, sess := range s.byID {
		if s.expired(sess, now) {
			delete(s.byID, k)
		}
	}
}

// End ends a session (sign-out, or a token that stopped working) and clears the cookie on w.
func (s *Store[T]) End(w http.ResponseWriter, sess *Session[T]) {
	if sess != nil {
		s.mu.Lock()
		delete(s.byID, sess.key)
		s.mu.Unlock()
	}
	http.SetCookie(w, s.cookie("", -1))
}

// EndToken ends every session signed in with the token of id tokenID (it was revoked).
func (s *Store[T]) EndToken(tokenID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, sess := range s.byID {
		if sess.TokenID == tokenID {
			delete(s.byID, k)
		}
	}
}

// Len returns how many sessions are held.
func (s *Store[T]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}
