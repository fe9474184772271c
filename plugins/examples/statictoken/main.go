// Command mailintake-auth-statictoken is an example third-party auth provider for mailintake: it
// presents a bearer token the admin stores for the mailbox (e.g. one issued by another system) with
// SASL XOAUTH2 or OAUTHBEARER. It lives in its own Go module and uses only the public SDK, exactly
// as a provider written outside this repository would: its go.mod requires the SDK's module alone
// (go get github.com/mailintake/mailintake/plugins/authplugin@v1.0.0), not the server's.
//
// Build it, put it in the server's plugin directory, optionally pin its SHA-256:
//
//	go build -o /path/to/plugins/mailintake-auth-statictoken .
//	sha256sum /path/to/plugins/mailintake-auth-statictoken   # → [plugins.statictoken] sha256 = "…"
package main

import (
	"context"
	"strings"
	"time"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

type provider struct{}

func (provider) Describe(context.Context) (authplugin.Description, error) {
	return authplugin.Description{
		Name:        "statictoken",
		Version:     "0.1.0",
		DisplayName: "Static bearer token (example)",
		Description: "Presents a bearer token stored for the mailbox. An example of a third-party provider.",
		Fields: []authplugin.Field{
			{Name: "token", Label: "Bearer token", Required: true, Secret: true, Help: "The access token to present."},
			{Name: "mechanism", Label: "SASL mechanism", Type: authplugin.FieldEnum, Options: []string{"XOAUTH2", "OAUTHBEARER"}, Default: "XOAUTH2"},
			{Name: "lifetime", Label: "Token lifetime", Help: "How long the server may reuse the token before asking again (a Go duration, e.g. 1h). Empty: until refused."},
		},
		SASLMechanisms: []string{"XOAUTH2", "OAUTHBEARER"},
		Protocols:      []string{"imap", "pop3", "smtp"},
	}, nil
}

func (provider) ValidateConfig(_ context.Context, a authplugin.Account) error {
	var v authplugin.Validator
	if strings.TrimSpace(a.Secrets["token"]) == "" {
		v.Add("token", "is required")
	}
	if m := a.Config["mechanism"]; m != "" && m != "XOAUTH2" && m != "OAUTHBEARER" {
		v.Add("mechanism", "must be XOAUTH2 or OAUTHBEARER, not %q", m)
	}
	if l := a.Config["lifetime"]; l != "" {
		if d, err := time.ParseDuration(l); err != nil || d <= 0 {
			v.Add("lifetime", "must be a positive duration like 1h, not %q", l)
		}
	}
	if a.Username == "" {
		v.Add("username", "is required")
	}
	return v.Err()
}

func (p provider) IssueCredential(ctx context.Context, req authplugin.Request) (authplugin.IssueResult, error) {
	if err := p.ValidateConfig(ctx, req.Account); err != nil {
		return authplugin.IssueResult{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Message: err.Error(),
			Action: "Store a token for the mailbox."}
	}
	mech := req.Account.Config["mechanism"]
	if mech == "" {
		mech = "XOAUTH2"
	}
	cred := authplugin.Credential{Mechanism: mech, Identity: req.Account.Username, Secret: strings.TrimSpace(req.Account.Secrets["token"])}
	if l, err := time.ParseDuration(req.Account.Config["lifetime"]); err == nil {
		cred.Expiry = time.Now().Add(l)
	}
	authplugin.Logger().Debug("issued the stored token", "mailbox", req.Account.MailboxID)
	return authplugin.IssueResult{Credential: cred}, nil
}

func main() { authplugin.Serve(provider{}) }
