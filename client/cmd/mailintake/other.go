package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/parse"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

func (a *app) tail(ctx context.Context, args []string) error {
	fs := a.newFlags("tail", "tail [--mailbox ID]... [--ack] [--limit N] [--timeout DUR] [--quiet]")
	var mailboxes kvFlag
	fs.Var(&mailboxes, "mailbox", "only this mailbox (repeatable)")
	ack := fs.Bool("ack", false, "acknowledge each message after printing it")
	limit := fs.Int("limit", 0, "exit after this many messages")
	timeout := fs.Duration("timeout", 0, "exit when nothing new arrives for this long")
	quiet := fs.Bool("quiet", false, "print only a final line with the count, bytes and rate")
	maxInFlight := fs.Uint("max-in-flight", 0, "unacknowledged messages the server may send ahead (default: the server's)")
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("tail takes no arguments")
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(time.Duration(1<<62), cancel)
	if *timeout > 0 {
		idle.Reset(*timeout)
	}
	defer idle.Stop()
	stream, err := cl.Messages.StreamMessages(sctx, &mailintakev1.StreamMessagesRequest{MailboxIds: mailboxes, MaxInFlight: uint32(*maxInFlight)})
	if err != nil {
		return err
	}
	line := protojson.MarshalOptions{}
	start := time.Now()
	var count, bytes int
	// Acknowledged in batches (one call for many messages); what is queued goes out before the
	// command returns.
	batch := 0
	if *maxInFlight > 0 {
		batch = max(1, int(*maxInFlight)/2)
	}
	acks := cl.NewAcker(context.WithoutCancel(ctx), client.AckerOptions{MaxBatch: batch})
	defer acks.Flush()
	finish := func() error {
		if err := acks.Flush(); err != nil {
			return err
		}
		if *quiet {
			secs := time.Since(start).Seconds()
			fmt.Fprintf(a.stdout, "%d messages, %d bytes in %.2fs (%.1f msg/s, %.2f MB/s)\n", count, bytes, secs, float64(count)/secs, float64(bytes)/secs/1e6)
		}
		return nil
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || (sctx.Err() != nil && ctx.Err() == nil && status.Code(err) == codes.Canceled) {
				return finish()
			}
			return err
		}
		msg := resp.GetMessage()
		count++
		bytes += int(msg.GetRawSize())
		if !*quiet {
			b, err := line.Marshal(msg)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, string(b))
		}
		if *ack {
			if err := acks.Ack(msg.GetId()); err != nil {
				return err
			}
		}
		if *limit > 0 && count >= *limit {
			return finish()
		}
		if *timeout > 0 {
			idle.Reset(*timeout)
		}
	}
}

func (a *app) parse(args []string) error {
	fs := a.newFlags("parse", "parse FILE|-")
	ticket := fs.String("ticket-pattern", "", "regular expression finding a ticket reference in the subject")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("parse takes one file name, or - for standard input")
	}
	var raw []byte
	if pos[0] == "-" {
		raw, err = io.ReadAll(a.stdin)
	} else {
		raw, err = os.ReadFile(pos[0])
	}
	if err != nil {
		return &failure{msg: err.Error()}
	}
	opts := parse.Options{}
	if *ticket != "" {
		re, err := regexp.Compile(*ticket)
		if err != nil {
			return usagef("--ticket-pattern: %v", err)
		}
		opts.TicketPattern = re
	}
	return a.printJSON(parse.Parse(raw, opts))
}

func (a *app) providers(ctx context.Context, args []string) error {
	fs := a.newFlags("providers", "providers")
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("providers takes no arguments")
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Providers.ListAuthProviders(rctx, &mailintakev1.ListAuthProvidersRequest{})
	if err != nil {
		return err
	}
	if a.g.json {
		return a.printJSON(resp)
	}
	for i, p := range resp.GetProviders() {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		fmt.Fprintf(a.stdout, "%s %s — %s\n", p.GetName(), p.GetVersion(), p.GetDisplayName())
		if p.GetDescription() != "" {
			fmt.Fprintf(a.stdout, "  %s\n", p.GetDescription())
		}
		fmt.Fprintf(a.stdout, "  SASL: %s\n", strings.Join(p.GetSaslMechanisms(), ", "))
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FIELD\tKIND\tLABEL\tHELP")
		for _, f := range p.GetFields() {
			var kind []string
			if f.GetRequired() {
				kind = append(kind, "required")
			}
			if f.GetSecret() {
				kind = append(kind, "secret")
			}
			if len(f.GetOptions()) > 0 {
				kind = append(kind, strings.Join(f.GetOptions(), "|"))
			}
			if f.GetDefaultValue() != "" {
				kind = append(kind, "default "+f.GetDefaultValue())
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", f.GetName(), strings.Join(kind, ", "), f.GetLabel(), f.GetHelp())
		}
		tw.Flush()
	}
	return nil
}

func (a *app) tokenCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("token needs a subcommand: create --tenant T [--name N] [--expires-in D], list, revoke ID")
	}
	sub, rest := args[0], args[1:]
	fs := a.newFlags("token "+sub, "token create --tenant T [--name N] [--expires-in D] | token list [--all] | token revoke ID")
	var tenant, name *string
	var all *bool
	var expiresIn *time.Duration
	switch sub {
	case "create":
		tenant = fs.String("tenant", "", "the tenant the token is scoped to")
		name = fs.String("name", "", "a name for the token")
		expiresIn = fs.Duration("expires-in", 0, "how long the token is valid, e.g. 2160h (default: until revoked)")
	case "list":
		all = fs.Bool("all", false, "include revoked tokens")
	case "revoke":
	default:
		return usagef("unknown token subcommand %q: create, list, revoke", sub)
	}
	pos, err := parseArgs(fs, rest)
	if err != nil {
		return err
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	switch sub {
	case "create":
		if len(pos) > 0 {
			return usagef("token create takes no arguments")
		}
		if *tenant == "" {
			return usagef("token create needs --tenant")
		}
		req := &mailintakev1.CreateTokenRequest{Tenant: *tenant, Name: *name}
		if *expiresIn != 0 {
			req.Ttl = durationpb.New(*expiresIn)
		}
		resp, err := cl.Tokens.CreateToken(rctx, req)
		if err != nil {
			return err
		}
		if a.g.json {
			return a.printJSON(resp)
		}
		fmt.Fprintln(a.stdout, resp.GetSecret())
		expiry := "valid until revoked"
		if e := resp.GetToken().GetExpireTime(); e != nil {
			expiry = "expires " + e.AsTime().Format(time.RFC3339)
		}
		fmt.Fprintf(a.stderr, "token %s for tenant %s (%s); this is the only time it is shown\n", resp.GetToken().GetId(), resp.GetToken().GetTenant(), expiry)
		return nil
	case "list":
		resp, err := cl.Tokens.ListTokens(rctx, &mailintakev1.ListTokensRequest{IncludeRevoked: *all})
		if err != nil {
			return err
		}
		if a.g.json {
			return a.printJSON(resp)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tTENANT\tADMIN\tCREATED\tEXPIRES\tREVOKED")
		for _, t := range resp.GetTokens() {
			revoked, expires := "", "never"
			if t.GetRevokeTime() != nil {
				revoked = t.GetRevokeTime().AsTime().Format(time.RFC3339)
			}
			if t.GetExpireTime() != nil {
				expires = t.GetExpireTime().AsTime().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", t.GetId(), t.GetName(), t.GetTenant(), t.GetAdmin(),
				t.GetCreateTime().AsTime().Format(time.RFC3339), expires, revoked)
		}
		return tw.Flush()
	default:
		if len(pos) != 1 {
			return usagef("token revoke takes one token ID")
		}
		if _, err := cl.Tokens.RevokeToken(rctx, &mailintakev1.RevokeTokenRequest{Id: pos[0]}); err != nil {
			return err
		}
		if !a.g.json {
			fmt.Fprintf(a.stdout, "revoked token %s\n", pos[0])
		}
		return nil
	}
}
