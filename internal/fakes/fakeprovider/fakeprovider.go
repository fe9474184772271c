// Package fakeprovider is an auth provider for tests: its config tells it to succeed, fail with a
// typed error, crash, hang, answer garbage, or issue expiring credentials whose serial number
// lives in the provider state, so tests can watch the host's cache, restart and state handling.
// With "control" set to a file, the file's content (when it exists) overrides "behavior" at
// every call, so a test can change the provider's behaviour under a running server. With
// "login_password" set, the credential is PLAIN with that password, so it can sign in to a real
// server.
package fakeprovider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

// Provider is the fake provider.
type Provider struct{}

// Describe implements authplugin.Provider.
func (Provider) Describe(context.Context) (authplugin.Description, error) {
	return authplugin.Description{
		Name: "fake", Version: "0.0.1", DisplayName: "Fake (tests only)",
		Fields: []authplugin.Field{
			{Name: "behavior", Type: authplugin.FieldEnum, Options: []string{"ok", "fail", "error", "crash", "hang", "garbage", "needs-password-file"}},
			{Name: "ttl", Help: "credential lifetime, a Go duration"},
			{Name: "password", Secret: true},
			{Name: "login_password", Secret: true, Help: "the credential's secret, to sign in to a real server"},
			{Name: "control", Help: "a file whose content, when it exists, overrides behavior"},
			{Name: "password_file", Help: "not a secret despite its name: required when behavior is needs-password-file"},
		},
		SASLMechanisms: []string{"PLAIN"},
		Protocols:      []string{"imap"},
	}, nil
}

// ValidateConfig implements authplugin.Provider.
func (Provider) ValidateConfig(_ context.Context, a authplugin.Account) error {
	var v authplugin.Validator
	if a.Config["behavior"] == "needs-password-file" && a.Config["password_file"] == "" {
		v.Add("password_file", "is required")
	}
	if ttl, ok := a.Config["ttl"]; ok {
		if _, err := time.ParseDuration(ttl); err != nil {
			v.Add("ttl", "must be a duration like 90s")
		}
	}
	return v.Err()
}

// IssueCredential implements authplugin.Provider.
func (Provider) IssueCredential(ctx context.Context, req authplugin.Request) (authplugin.IssueResult, error) {
	behavior := req.Account.Config["behavior"]
	if f := req.Account.Config["control"]; f != "" {
		if b, err := os.ReadFile(f); err == nil {
			behavior = strings.TrimSpace(string(b))
		}
	}
	authplugin.Logger().Info("issuing credential", "mailbox", req.Account.MailboxID, "behavior", behavior)
	// What the host sent, so tests can check a plugin gets only its mailbox's account: the
	// non-secret config as is, the secrets as a fingerprint.
	authplugin.Logger().Debug("account received", "mailbox", req.Account.MailboxID, "username", req.Account.Username,
		"config", fmt.Sprint(req.Account.Config), "secrets", SecretsFingerprint(req.Account.Secrets))
	switch behavior {
	case "fail":
		return authplugin.IssueResult{}, &authplugin.Error{
			Reason: authplugin.ReasonInvalidCredentials, Code: "FAKE42",
			Message: "the fake says no", Action: "Change the fake's behavior.",
			SupportIDs: map[string]string{"trace_id": "t-1"},
		}
	case "error":
		return authplugin.IssueResult{}, errors.New("something unexpected")
	case "crash":
		os.Exit(3)
	case "hang":
		select {} // ignores the deadline on purpose
	case "garbage":
		return authplugin.IssueResult{Credential: authplugin.Credential{Mechanism: "X-GARBAGE\x00", Expiry: time.Unix(1, 0)}}, nil
	}
	serial := 0
	if len(req.State) > 0 {
		serial, _ = strconv.Atoi(string(req.State))
	}
	serial++
	cred := authplugin.Credential{Mechanism: "PLAIN", Identity: req.Account.Username, Secret: "token-" + strconv.Itoa(serial)}
	if pw := req.Account.Secrets["login_password"]; pw != "" {
		cred.Secret = pw
	}
	if ttl, err := time.ParseDuration(req.Account.Config["ttl"]); err == nil {
		cred.Expiry = time.Now().Add(ttl)
	}
	return authplugin.IssueResult{Credential: cred, State: []byte(strconv.Itoa(serial)), StateChanged: true}, nil
}

// SecretsFingerprint is a short hash of a secrets map, for tests that check which secrets a
// plugin received without logging them.
func SecretsFingerprint(secrets map[string]string) string {
	keys := make([]string, 0, len(secrets))
	for k := range secrets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, secrets[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

var _ authplugin.Provider = Provider{}
