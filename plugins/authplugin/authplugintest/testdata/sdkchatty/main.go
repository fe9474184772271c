// Command sdkchatty is a provider built with the SDK that prints to stdout while it answers:
// go-plugin carries a Go provider's stdout over plugin.GRPCStdio.
package main

import (
	"context"
	"fmt"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

type provider struct{}

func (provider) Describe(context.Context) (authplugin.Description, error) {
	fmt.Println("describing myself")
	return authplugin.Description{Name: "sdkchatty", Version: "1", SASLMechanisms: []string{"PLAIN"}, Protocols: []string{"imap"}}, nil
}

func (provider) ValidateConfig(context.Context, authplugin.Account) error { return nil }

func (provider) IssueCredential(context.Context, authplugin.Request) (authplugin.IssueResult, error) {
	return authplugin.IssueResult{}, &authplugin.Error{Reason: authplugin.ReasonConfigInvalid, Message: "nothing configured"}
}

func main() { authplugin.Serve(provider{}) }
