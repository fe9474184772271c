// Package fakeprovider is an auth provider for tests: its config tells it to succeed, fail with a
// typed error, crash, hang, or issue expiring credentials whose serial number lives in the
// provider state, so tests can watch the host's cache, restart and state handling.
package fakeprovider

import (
	"context"
	"errors"
	"os"
	"strconv"
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
			{Name: "behavior", Type: authplugin.FieldEnum, Options: []string{"ok", "fail", "error", "crash", "hang"}},
			{Name: "ttl", Help: "credential lifetime, a Go duration"},
			{Name: "password", Secret: true},
		},
		SASLMechanisms: []string{"PLAIN"},
		Protocols:      []string{"imap"},
	}, nil
}

// ValidateConfig implements authplugin.Provider.
func (Provider) ValidateConfig(_ context.Context, a authplugin.Account) error {
	var v authplugin.Validator
	if ttl, ok := a.Config["ttl"]; ok {
		if _, err := time.ParseDuration(ttl); err != nil {
			v.Add("ttl", "must be a duration like 90s")
		}
	}
	return v.Err()
}

// IssueCredential implements authplugin.Provider.
func (Provider) IssueCredential(ctx context.Context, req authplugin.Request) (authplugin.IssueResult, error) {
	authplugin.Logger().Info("issuing credential", "mailbox", req.Account.MailboxID, "behavior", req.Account.Config["behavior"])
	switch req.Account.Config["behavior"] {
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
	}
	serial := 0
	if len(req.State) > 0 {
		serial, _ = strconv.Atoi(string(req.State))
	}
	serial++
	cred := authplugin.Credential{Mechanism: "PLAIN", Identity: req.Account.Username, Secret: "token-" + strconv.Itoa(serial)}
	if ttl, err := time.ParseDuration(req.Account.Config["ttl"]); err == nil {
		cred.Expiry = time.Now().Add(ttl)
	}
	return authplugin.IssueResult{Credential: cred, State: []byte(strconv.Itoa(serial)), StateChanged: true}, nil
}

var _ authplugin.Provider = Provider{}
