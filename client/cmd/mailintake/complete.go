package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// completionTimeout bounds each call that shell completion makes: with the server down or slow,
// the shell gets no suggestions, quickly.
const completionTimeout = 2 * time.Second

// completeGlobals registers the completions of the global flags.
func (a *app) completeGlobals(root *cobra.Command) {
	_ = root.MarkPersistentFlagDirname("data-dir")
	for _, name := range []string{"addr", "token", "rpc-timeout"} {
		_ = root.RegisterFlagCompletionFunc(name, cobra.NoFileCompletions)
	}
}

// completeDefFlags registers the completions of the mailbox definition flags on cmd.
func (a *app) completeDefFlags(cmd *cobra.Command) {
	noSpace := cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
	_ = cmd.RegisterFlagCompletionFunc("security", cobra.FixedCompletions([]cobra.Completion{"tls", "starttls", "none"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("smtp-security", cobra.FixedCompletions([]cobra.Completion{"tls", "starttls", "none"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("protocol", cobra.FixedCompletions([]cobra.Completion{"imap", "pop3"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("poll-interval", cobra.NoFileCompletions)
	_ = cmd.RegisterFlagCompletionFunc("start-from", cobra.FixedCompletions([]cobra.Completion{"new", "unseen", "all"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("after-ack", func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if strings.HasPrefix(toComplete, "move:") {
			return nil, noSpace // the folder is the user's to type
		}
		return []cobra.Completion{"mark-seen", "move:", "delete", "keep"}, noSpace
	})
	_ = cmd.RegisterFlagCompletionFunc("provider", a.completeProviders)
	_ = cmd.RegisterFlagCompletionFunc("tenant", a.completeTenants)
}

// completionCtx is the context of one completion call.
func completionCtx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, completionTimeout)
}

// listForCompletion returns the first page of mailboxes the token sees, or nil when the server
// cannot say in time.
func (a *app) listForCompletion(cmd *cobra.Command) []*mailintakev1.Mailbox {
	cl, err := a.connect()
	if err != nil {
		return nil
	}
	ctx, cancel := completionCtx(cmd)
	defer cancel()
	resp, err := cl.Mailboxes.ListMailboxes(ctx, &mailintakev1.ListMailboxesRequest{PageSize: 500})
	if err != nil {
		return nil
	}
	return resp.GetMailboxes()
}

// completeMailboxID completes the one mailbox ID argument of a command.
func (a *app) completeMailboxID(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return a.completeMailboxIDs(cmd, args, toComplete)
}

// completeMailboxIDs completes a mailbox ID (described by the mailbox's name), from the server.
func (a *app) completeMailboxIDs(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, mb := range a.listForCompletion(cmd) {
		if strings.HasPrefix(mb.GetId(), toComplete) {
			out = append(out, cobra.CompletionWithDesc(mb.GetId(), mb.GetDisplayName()))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeTenants completes a tenant from the tenants of the mailboxes the token sees.
func (a *app) completeTenants(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	var out []cobra.Completion
	for _, mb := range a.listForCompletion(cmd) {
		if t := mb.GetTenant(); strings.HasPrefix(t, toComplete) && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeProviders completes an auth provider's name (described by its display name).
func (a *app) completeProviders(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	cl, err := a.connect()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := completionCtx(cmd)
	defer cancel()
	resp, err := cl.Providers.ListAuthProviders(ctx, &mailintakev1.ListAuthProvidersRequest{})
	var out []cobra.Completion
	for _, p := range resp.GetProviders() {
		if err == nil && strings.HasPrefix(p.GetName(), toComplete) {
			out = append(out, cobra.CompletionWithDesc(p.GetName(), p.GetDisplayName()))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeTokenID completes the token ID argument of token revoke (described by its name and
// tenant).
func (a *app) completeTokenID(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cl, err := a.connect()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := completionCtx(cmd)
	defer cancel()
	resp, err := cl.Tokens.ListTokens(ctx, &mailintakev1.ListTokensRequest{})
	var out []cobra.Completion
	for _, t := range resp.GetTokens() {
		if err == nil && strings.HasPrefix(t.GetId(), toComplete) {
			out = append(out, cobra.CompletionWithDesc(t.GetId(), strings.TrimSpace(t.GetName()+" "+t.GetTenant())))
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
