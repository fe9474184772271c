// Package basic is the username + password auth provider (SASL PLAIN or LOGIN). It is written
// only against the public SDK, like any third-party provider; cmd/mailintake-auth-basic serves it.
package basic

import (
	"context"
	"slices"
	"strings"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

// Version is the provider's version.
const Version = "1.0.0"

// Config and secret field names.
const (
	FieldPassword  = "password"
	FieldMechanism = "mechanism"
)

var mechanisms = []string{"PLAIN", "LOGIN"}

// Provider issues the mailbox's own username and password.
type Provider struct{}

// Describe implements authplugin.Provider.
func (Provider) Describe(context.Context) (authplugin.Description, error) {
	return authplugin.Description{
		Name:        "basic",
		Version:     Version,
		DisplayName: "Username and password",
		Description: "Signs in with the mailbox's username and password (SASL PLAIN or LOGIN).",
		Fields: []authplugin.Field{
			{Name: FieldPassword, Label: "Password", Help: "The mailbox account's password.", Required: true, Secret: true},
			{Name: FieldMechanism, Label: "SASL mechanism", Help: "PLAIN unless the server only offers LOGIN.",
				Type: authplugin.FieldEnum, Options: mechanisms, Default: "PLAIN"},
		},
		SASLMechanisms: mechanisms,
		Protocols:      []string{"imap", "pop3", "smtp"},
	}, nil
}

// ValidateConfig implements authplugin.Provider.
func (Provider) ValidateConfig(_ context.Context, acct authplugin.Account) error {
	var v authplugin.Validator
	switch {
	case acct.Username == "":
		v.Add("username", "is required")
	case strings.ContainsAny(acct.Username, "\x00\r\n"):
		v.Add("username", "must not contain NUL or line breaks")
	}
	switch pw, ok := acct.Secrets[FieldPassword]; {
	case !ok || pw == "":
		v.Add(FieldPassword, "is required")
	case strings.ContainsAny(pw, "\x00\r\n"):
		v.Add(FieldPassword, "must not contain NUL or line breaks (SASL cannot carry them)")
	}
	if m, ok := acct.Config[FieldMechanism]; ok && !slices.Contains(mechanisms, strings.ToUpper(m)) {
		v.Add(FieldMechanism, "must be one of %s, not %q", strings.Join(mechanisms, ", "), m)
	}
	for k := range acct.Config {
		if k != FieldMechanism {
			v.Add(k, "is not a field of the basic provider (fields: %s)", FieldMechanism)
		}
	}
	for k := range acct.Secrets {
		if k != FieldPassword {
			v.Add(k, "is not a secret of the basic provider (secrets: %s)", FieldPassword)
		}
	}
	return v.Err()
}

// IssueCredential implements authplugin.Provider: the stored password, which does not expire.
func (p Provider) IssueCredential(ctx context.Context, req authplugin.Request) (authplugin.IssueResult, error) {
	if err := p.ValidateConfig(ctx, req.Account); err != nil {
		return authplugin.IssueResult{}, &authplugin.Error{
			Reason:  authplugin.ReasonConfigInvalid,
			Message: err.Error(),
			Action:  "Correct the mailbox's username and password.",
		}
	}
	mech := strings.ToUpper(req.Account.Config[FieldMechanism])
	if mech == "" {
		mech = "PLAIN"
	}
	return authplugin.IssueResult{Credential: authplugin.Credential{
		Mechanism: mech,
		Identity:  req.Account.Username,
		Secret:    req.Account.Secrets[FieldPassword],
	}}, nil
}

var _ authplugin.Provider = Provider{}
