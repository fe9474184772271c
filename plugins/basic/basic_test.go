package basic

import (
	"context"
	"errors"
	"testing"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

func TestValidateConfig(t *testing.T) {
	ok := authplugin.Account{Username: "u", Secrets: map[string]string{"password": "p"}, Config: map[string]string{}}
	if err := (Provider{}).ValidateConfig(context.Background(), ok); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	cases := map[string]struct {
		acct  authplugin.Account
		field string
	}{
		"no username":      {authplugin.Account{Secrets: map[string]string{"password": "p"}}, "username"},
		"no password":      {authplugin.Account{Username: "u"}, "password"},
		"NUL in password":  {authplugin.Account{Username: "u", Secrets: map[string]string{"password": "a\x00b"}}, "password"},
		"bad mechanism":    {authplugin.Account{Username: "u", Secrets: map[string]string{"password": "p"}, Config: map[string]string{"mechanism": "XOAUTH2"}}, "mechanism"},
		"unknown field":    {authplugin.Account{Username: "u", Secrets: map[string]string{"password": "p"}, Config: map[string]string{"tenant_id": "x"}}, "tenant_id"},
		"unknown secret":   {authplugin.Account{Username: "u", Secrets: map[string]string{"password": "p", "client_secret": "x"}}, "client_secret"},
		"newline username": {authplugin.Account{Username: "u\r\nA1 LOGOUT", Secrets: map[string]string{"password": "p"}}, "username"},
	}
	for name, c := range cases {
		err := (Provider{}).ValidateConfig(context.Background(), c.acct)
		var verr *authplugin.ValidationError
		if !errors.As(err, &verr) || len(verr.Violations) != 1 || verr.Violations[0].Field != c.field {
			t.Errorf("%s: %v, want one violation of %s", name, err, c.field)
		}
	}
}

func TestIssueCredential(t *testing.T) {
	p := Provider{}
	res, err := p.IssueCredential(context.Background(), authplugin.Request{Account: authplugin.Account{
		Username: "u@example.com", Secrets: map[string]string{"password": "pw"}, Config: map[string]string{"mechanism": "login"}}})
	if err != nil || res.Credential != (authplugin.Credential{Mechanism: "LOGIN", Identity: "u@example.com", Secret: "pw"}) || res.StateChanged {
		t.Errorf("IssueCredential = %+v, %v", res, err)
	}
	_, err = p.IssueCredential(context.Background(), authplugin.Request{Account: authplugin.Account{Username: "u"}})
	if !errors.Is(err, authplugin.ErrConfigInvalid) {
		t.Errorf("IssueCredential without a password = %v, want ErrConfigInvalid", err)
	}
}
