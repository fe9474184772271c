package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

const mailboxUsage = `mailbox add|list|get|update|enable|disable|rm|status|test|authorize

  mailbox add --name N --host H [--port P] [--security tls|starttls|none] --username U
              --provider NAME [--config key=value]... [--password-stdin | --secret-stdin]
              [--ca-file F] [--folder F] [--after-ack mark-seen|move:FOLDER|delete|keep]
              [--start-from new|unseen|all] [--tenant T] [--disabled]
  mailbox list [--tenant T]
  mailbox get ID
  mailbox update ID [any add flag]     change only the flags given
  mailbox enable ID | disable ID
  mailbox rm ID
  mailbox status ID
  mailbox events ID [--limit N]
  mailbox test ID | mailbox test [add flags]
  mailbox dry-run ID | mailbox dry-run [add flags]   how many messages a first sync would deliver
  mailbox authorize ID`

func (a *app) mailbox(ctx context.Context, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef("mailbox needs a subcommand:\n%s", mailboxUsage)
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "add", "create":
		return a.mailboxAdd(ctx, rest)
	case "list", "ls":
		return a.mailboxList(ctx, rest)
	case "get", "show":
		return a.mailboxGet(ctx, rest)
	case "update", "set":
		return a.mailboxUpdate(ctx, rest, nil)
	case "enable", "disable":
		on := sub == "enable"
		return a.mailboxUpdate(ctx, rest, &on)
	case "rm", "delete":
		return a.mailboxRm(ctx, rest)
	case "status":
		return a.mailboxStatus(ctx, rest)
	case "events", "log":
		return a.mailboxEvents(ctx, rest)
	case "dry-run", "preview":
		return a.mailboxDryRun(ctx, rest)
	case "test":
		return a.mailboxTest(ctx, rest)
	case "authorize":
		return a.mailboxAuthorize(ctx, rest)
	default:
		return usagef("unknown mailbox subcommand %q:\n%s", sub, mailboxUsage)
	}
}

// defFlags are the flags that describe a mailbox (add, update, test).
type defFlags struct {
	name, host, security, username, provider, caFile, folder, afterAck, startFrom, tenant, ticketPattern string
	port                                                                                                 int
	config                                                                                               kvFlag
	passwordStdin, secretStdin, disabled, skipVerify                                                     bool
	maxMessageBytes                                                                                      uint64
	secretField                                                                                          string
}

type kvFlag []string

func (k *kvFlag) String() string     { return strings.Join(*k, ",") }
func (k *kvFlag) Set(v string) error { *k = append(*k, v); return nil }

func (d *defFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.name, "name", "", "display name")
	fs.StringVar(&d.host, "host", "", "mail server host, e.g. outlook.office365.com")
	fs.IntVar(&d.port, "port", 0, "mail server port (default 993 for tls, 143 for starttls and none)")
	fs.StringVar(&d.security, "security", "tls", "tls, starttls or none")
	fs.StringVar(&d.username, "username", "", "the account to sign in as")
	fs.StringVar(&d.provider, "provider", "", "auth provider, e.g. basic or o365 (see 'mailintake providers')")
	fs.Var(&d.config, "config", "provider field as key=value (repeatable)")
	fs.BoolVar(&d.passwordStdin, "password-stdin", false, "read the password from standard input")
	fs.BoolVar(&d.secretStdin, "secret-stdin", false, "read the client secret (or the secret named by --secret-field) from standard input")
	fs.StringVar(&d.secretField, "secret-field", "client_secret", "the provider's secret field --secret-stdin fills")
	fs.StringVar(&d.caFile, "ca-file", "", "PEM CA certificates to trust for the mail server")
	fs.BoolVar(&d.skipVerify, "insecure-skip-verify", false, "do not verify the mail server's certificate (testing only)")
	fs.StringVar(&d.folder, "folder", "", "folder to watch (default INBOX)")
	fs.StringVar(&d.afterAck, "after-ack", "", "mark-seen (default), move:FOLDER, delete or keep")
	fs.StringVar(&d.startFrom, "start-from", "", "new (default), unseen or all")
	fs.StringVar(&d.tenant, "tenant", "", "tenant the mailbox belongs to (required with the admin token)")
	fs.StringVar(&d.ticketPattern, "ticket-pattern", "", `regular expression finding a ticket reference in the subject, e.g. '\[#(\d+)\]'`)
	fs.Uint64Var(&d.maxMessageBytes, "max-message-size", 0, "messages larger than this many bytes are quarantined")
	fs.BoolVar(&d.disabled, "disabled", false, "create the mailbox disabled")
}

// invalid is a bad flag value, reported like the server's field violations (exit 1).
func invalid(field, format string, args ...any) error {
	return &failure{msg: fmt.Sprintf("invalid request:\n  mailbox.%s: %s", field, fmt.Sprintf(format, args...))}
}

var securities = map[string]mailintakev1.Security{
	"tls": mailintakev1.Security_SECURITY_TLS, "ssl": mailintakev1.Security_SECURITY_TLS,
	"starttls": mailintakev1.Security_SECURITY_STARTTLS, "none": mailintakev1.Security_SECURITY_NONE,
}

var startFroms = map[string]mailintakev1.StartFrom{
	"new": mailintakev1.StartFrom_START_FROM_NEW, "unseen": mailintakev1.StartFrom_START_FROM_UNSEEN, "all": mailintakev1.StartFrom_START_FROM_ALL,
}

func parseAfterAck(s string) (*mailintakev1.AfterAck, error) {
	action, folder, hasFolder := strings.Cut(s, ":")
	switch strings.ToLower(action) {
	case "mark-seen", "seen":
		return &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MARK_SEEN}, nil
	case "move":
		if !hasFolder || folder == "" {
			return nil, invalid("after_ack.folder", "move needs a folder: --after-ack move:Processed")
		}
		return &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE, Folder: folder}, nil
	case "delete":
		return &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE}, nil
	case "keep":
		return &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP}, nil
	}
	return nil, invalid("after_ack", "%q is not one of mark-seen, move:FOLDER, delete, keep", s)
}

// build turns the flags that were set into a mailbox definition and its field mask.
func (d *defFlags) build(fs *flag.FlagSet, a *app, forCreate bool) (*mailintakev1.Mailbox, []string, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	mb := &mailintakev1.Mailbox{DisplayName: d.name, Host: d.host, Username: d.username, AuthProvider: d.provider,
		Folder: d.folder, Tenant: d.tenant, TicketPattern: d.ticketPattern, Enabled: !d.disabled}
	var mask []string
	if forCreate || set["security"] {
		sec, ok := securities[strings.ToLower(d.security)]
		if !ok {
			return nil, nil, invalid("security", "%q is not one of tls, starttls, none", d.security)
		}
		mb.Security = sec
	}
	if set["port"] {
		if d.port < 0 || d.port > 1<<31 {
			return nil, nil, invalid("port", "must be between 1 and 65535, not %d", d.port)
		}
		mb.Port = uint32(d.port)
	} else if forCreate {
		mb.Port = 993
		if mb.Security != mailintakev1.Security_SECURITY_TLS {
			mb.Port = 143
		}
	}
	if d.afterAck != "" {
		aa, err := parseAfterAck(d.afterAck)
		if err != nil {
			return nil, nil, err
		}
		mb.AfterAck = aa
	}
	if d.startFrom != "" {
		sf, ok := startFroms[strings.ToLower(d.startFrom)]
		if !ok {
			return nil, nil, invalid("start_from", "%q is not one of new, unseen, all", d.startFrom)
		}
		mb.StartFrom = sf
	}
	if d.caFile != "" {
		pem, err := os.ReadFile(d.caFile)
		if err != nil {
			return nil, nil, invalid("ca_pem", "--ca-file: %v", err)
		}
		mb.CaPem = string(pem)
	}
	mb.InsecureSkipVerify = d.skipVerify
	if d.maxMessageBytes > 0 {
		mb.Limits = &mailintakev1.MailboxLimits{MaxMessageBytes: d.maxMessageBytes}
	}
	if len(d.config) > 0 {
		mb.AuthConfig = map[string]string{}
		for _, kv := range d.config {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, nil, usagef("--config takes key=value, not %q", kv)
			}
			mb.AuthConfig[k] = v
		}
	}
	if d.passwordStdin && d.secretStdin {
		return nil, nil, usagef("--password-stdin and --secret-stdin both read standard input; give one")
	}
	if d.passwordStdin || d.secretStdin {
		v, err := readSecret(a.stdin)
		if err != nil {
			return nil, nil, err
		}
		key := "password"
		if d.secretStdin {
			key = d.secretField
		}
		mb.AuthSecrets = map[string]string{key: v}
	}
	for flagName, path := range map[string]string{
		"name": "display_name", "host": "host", "port": "port", "security": "security", "username": "username",
		"provider": "auth_provider", "config": "auth_config", "ca-file": "ca_pem", "insecure-skip-verify": "insecure_skip_verify",
		"folder": "folder", "after-ack": "after_ack", "start-from": "start_from", "ticket-pattern": "ticket_pattern",
		"max-message-size": "limits", "disabled": "enabled",
	} {
		if set[flagName] {
			mask = append(mask, path)
		}
	}
	if mb.AuthSecrets != nil {
		mask = append(mask, "auth_secrets")
	}
	slices.Sort(mask)
	return mb, mask, nil
}

// readSecret reads one secret from r: the whole input without its final line break.
func readSecret(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return "", fmt.Errorf("reading standard input: %w", err)
	}
	return strings.TrimRight(string(data), "\r\n"), nil
}

// promptSecrets asks on the terminal for the provider's required secrets that were not given.
func (a *app) promptSecrets(ctx context.Context, mb *mailintakev1.Mailbox) error {
	f, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || mb.AuthProvider == "" {
		return nil
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
	for _, p := range resp.GetProviders() {
		if p.GetName() != mb.AuthProvider {
			continue
		}
		for _, fld := range p.GetFields() {
			if !fld.GetSecret() || !fld.GetRequired() || mb.AuthSecrets[fld.GetName()] != "" {
				continue
			}
			label := fld.GetLabel()
			if label == "" {
				label = fld.GetName()
			}
			fmt.Fprintf(a.stderr, "%s: ", label)
			v, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(a.stderr)
			if err != nil {
				return err
			}
			if mb.AuthSecrets == nil {
				mb.AuthSecrets = map[string]string{}
			}
			mb.AuthSecrets[fld.GetName()] = string(v)
		}
	}
	return nil
}

func (a *app) mailboxAdd(ctx context.Context, args []string) error {
	fs := a.newFlags("mailbox add", "mailbox add --name N --host H --username U --provider P [flags]")
	var d defFlags
	d.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("mailbox add takes no arguments, got %q", pos[0])
	}
	mb, _, err := d.build(fs, a, true)
	if err != nil {
		return err
	}
	if !d.passwordStdin && !d.secretStdin {
		if err := a.promptSecrets(ctx, mb); err != nil {
			return err
		}
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Mailboxes.CreateMailbox(rctx, &mailintakev1.CreateMailboxRequest{Mailbox: mb})
	if err != nil {
		return err
	}
	return a.printMailbox(resp.GetMailbox())
}

func (a *app) oneID(cmd string, args []string) ([]string, error) {
	fs := a.newFlags("mailbox "+cmd, "mailbox "+cmd+" ID")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != 1 {
		return nil, usagef("mailbox %s takes one mailbox ID", cmd)
	}
	return pos, nil
}

func (a *app) mailboxGet(ctx context.Context, args []string) error {
	pos, err := a.oneID("get", args)
	if err != nil {
		return err
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Mailboxes.GetMailbox(rctx, &mailintakev1.GetMailboxRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	return a.printMailbox(resp.GetMailbox())
}

func (a *app) mailboxList(ctx context.Context, args []string) error {
	fs := a.newFlags("mailbox list", "mailbox list [--tenant T]")
	tenant := fs.String("tenant", "", "only this tenant (admin token)")
	if pos, err := parseArgs(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("mailbox list takes no arguments")
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	all := &mailintakev1.ListMailboxesResponse{}
	token := ""
	for {
		rctx, cancel := a.rpcCtx(ctx)
		resp, err := cl.Mailboxes.ListMailboxes(rctx, &mailintakev1.ListMailboxesRequest{Tenant: *tenant, PageToken: token, PageSize: 500})
		cancel()
		if err != nil {
			return err
		}
		all.Mailboxes = append(all.Mailboxes, resp.GetMailboxes()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if a.g.json {
		return a.printJSON(all)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tNAME\tENABLED\tSERVER\tUSERNAME\tPROVIDER")
	for _, mb := range all.GetMailboxes() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", mb.GetId(), mb.GetTenant(), mb.GetDisplayName(), mb.GetEnabled(),
			server(mb), mb.GetUsername(), mb.GetAuthProvider())
	}
	return tw.Flush()
}

func server(mb *mailintakev1.Mailbox) string {
	sec := strings.ToLower(strings.TrimPrefix(mb.GetSecurity().String(), "SECURITY_"))
	return fmt.Sprintf("%s:%d (%s)", mb.GetHost(), mb.GetPort(), sec)
}

func (a *app) mailboxUpdate(ctx context.Context, args []string, enable *bool) error {
	name := "update"
	if enable != nil {
		name = map[bool]string{true: "enable", false: "disable"}[*enable]
	}
	fs := a.newFlags("mailbox "+name, "mailbox "+name+" ID [flags]")
	var d defFlags
	if enable == nil {
		d.register(fs)
		fs.Bool("enabled", false, "enable (true) or disable (false) the mailbox")
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("mailbox %s takes one mailbox ID", name)
	}
	var mb *mailintakev1.Mailbox
	var mask []string
	if enable != nil {
		mb, mask = &mailintakev1.Mailbox{Enabled: *enable}, []string{"enabled"}
	} else {
		mb, mask, err = d.build(fs, a, false)
		if err != nil {
			return err
		}
		if f := fs.Lookup("enabled"); f != nil {
			fs.Visit(func(fl *flag.Flag) {
				if fl.Name == "enabled" {
					mb.Enabled = f.Value.String() == "true"
					mask = append(mask, "enabled")
				}
			})
		}
		if len(mask) == 0 {
			return usagef("mailbox update needs at least one flag to change")
		}
	}
	mb.Id = pos[0]
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Mailboxes.UpdateMailbox(rctx, &mailintakev1.UpdateMailboxRequest{Mailbox: mb, UpdateMask: &fieldmaskpb.FieldMask{Paths: mask}})
	if err != nil {
		return err
	}
	return a.printMailbox(resp.GetMailbox())
}

func (a *app) mailboxRm(ctx context.Context, args []string) error {
	pos, err := a.oneID("rm", args)
	if err != nil {
		return err
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	if _, err := cl.Mailboxes.DeleteMailbox(rctx, &mailintakev1.DeleteMailboxRequest{Id: pos[0]}); err != nil {
		return err
	}
	if !a.g.json {
		fmt.Fprintf(a.stdout, "deleted mailbox %s\n", pos[0])
	}
	return nil
}

func (a *app) mailboxStatus(ctx context.Context, args []string) error {
	pos, err := a.oneID("status", args)
	if err != nil {
		return err
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Mailboxes.GetMailboxStatus(rctx, &mailintakev1.GetMailboxStatusRequest{Id: pos[0]})
	if err != nil {
		return err
	}
	st := resp.GetStatus()
	if a.g.json {
		return a.printJSON(st)
	}
	w := bufio.NewWriter(a.stdout)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-14s %s\n", k+":", v)
		}
	}
	when := func(ts interface{ AsTime() time.Time }, ok bool) string {
		if !ok {
			return ""
		}
		t := ts.AsTime().Local()
		return t.Format("2006-01-02 15:04:05") + " (" + humanSince(t) + ")"
	}
	line("state", strings.ToLower(strings.TrimPrefix(st.GetState().String(), "MAILBOX_STATE_")))
	line("detail", st.GetMessage())
	line("since", when(st.GetStateTime(), st.GetStateTime() != nil))
	if id := st.GetOwnerReplicaId(); id != "" {
		owner := "replica " + id
		if e := st.GetOwnerEpoch(); e > 0 {
			owner += fmt.Sprintf(" (lease epoch %d)", e)
		}
		line("owner", owner)
	}
	line("last sync", when(st.GetLastSyncTime(), st.GetLastSyncTime() != nil))
	if af := st.GetAuthFailure(); af != nil {
		reason := strings.ToLower(strings.TrimPrefix(af.GetReason().String(), "AUTH_FAILURE_REASON_"))
		if af.GetProviderCode() != "" {
			reason += " (" + af.GetProviderCode() + ")"
		}
		line("auth failure", reason)
		line("what to do", af.GetAction())
	}
	for _, w := range st.GetWarnings() {
		line("warning", w)
	}
	line("last error", st.GetLastError())
	line("error at", when(st.GetLastErrorTime(), st.GetLastErrorTime() != nil))
	line("next retry", when(st.GetNextRetryTime(), st.GetNextRetryTime() != nil))
	if th := st.GetTokenHealth(); th != nil {
		line("token expires", when(th.GetAccessTokenExpireTime(), th.GetAccessTokenExpireTime() != nil))
		line("token issued", when(th.GetLastRefreshTime(), th.GetLastRefreshTime() != nil))
		line("refresh token", when(th.GetStateRotateTime(), th.GetStateRotateTime() != nil))
		for _, warn := range th.GetWarnings() {
			line("warning", warn)
		}
	}
	c := st.GetCounts()
	line("messages", fmt.Sprintf("%d delivered, %d acknowledged, %d pending, %d quarantined", c.GetDelivered(), c.GetAcknowledged(), c.GetPending(), c.GetQuarantined()))
	return w.Flush()
}

// humanSince says how long ago (or how far ahead) t is.
func humanSince(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}

func (a *app) mailboxEvents(ctx context.Context, args []string) error {
	fs := a.newFlags("mailbox events", "mailbox events ID [--limit N]")
	limit := fs.Int("limit", 50, "how many events, newest first")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("mailbox events takes one mailbox ID")
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Mailboxes.ListMailboxEvents(rctx, &mailintakev1.ListMailboxEventsRequest{MailboxId: pos[0], PageSize: int32(min(max(*limit, 1), 500))})
	if err != nil {
		return err
	}
	if a.g.json {
		return a.printJSON(resp)
	}
	for _, e := range resp.GetEvents() {
		msg := e.GetMessage()
		if e.GetCount() > 1 {
			msg = fmt.Sprintf("%s (%d times since %s)", msg, e.GetCount(), e.GetFirstTime().AsTime().Local().Format("2006-01-02 15:04:05"))
		}
		fmt.Fprintf(a.stdout, "%s  %-10s %s\n", e.GetTime().AsTime().Local().Format("2006-01-02 15:04:05"), e.GetKind(), msg)
	}
	return nil
}

func (a *app) mailboxDryRun(ctx context.Context, args []string) error {
	fs := a.newFlags("mailbox dry-run", "mailbox dry-run ID | mailbox dry-run [mailbox add flags]")
	var d defFlags
	d.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	id, mb, err := a.idOrDefinition(ctx, "dry-run", fs, &d, pos)
	if err != nil {
		return err
	}
	req := &mailintakev1.PreviewFirstSyncRequest{Target: &mailintakev1.PreviewFirstSyncRequest_Id{Id: id}}
	if mb != nil {
		req.Target = &mailintakev1.PreviewFirstSyncRequest_Mailbox{Mailbox: mb}
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Mailboxes.PreviewFirstSync(rctx, req)
	if err != nil {
		return err
	}
	if a.g.json {
		return a.printJSON(resp)
	}
	from := strings.ToLower(strings.TrimPrefix(resp.GetStartFrom().String(), "START_FROM_"))
	fmt.Fprintf(a.stdout, "folder: %d messages, %d unseen\n", resp.GetFolderMessages(), resp.GetFolderUnseen())
	if resp.GetAlreadySynced() {
		fmt.Fprintln(a.stdout, "the mailbox has synchronised before: only new mail will be delivered")
		return nil
	}
	fmt.Fprintf(a.stdout, "start from %s: the first sync would deliver %d messages (marked as backfill), then new mail\n", from, resp.GetWouldDeliver())
	return nil
}

func (a *app) mailboxTest(ctx context.Context, args []string) error {
	fs := a.newFlags("mailbox test", "mailbox test ID | mailbox test [mailbox add flags]")
	var d defFlags
	d.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	id, mb, err := a.idOrDefinition(ctx, "test", fs, &d, pos)
	if err != nil {
		return err
	}
	req := &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Id{Id: id}}
	if mb != nil {
		req.Target = &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: mb}
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	defer cancel()
	resp, err := cl.Mailboxes.TestConnection(rctx, req)
	if err != nil {
		return err
	}
	if a.g.json {
		if err := a.printJSON(resp); err != nil {
			return err
		}
	} else {
		for _, s := range resp.GetSteps() {
			mark := map[mailintakev1.TestStepResult]string{
				mailintakev1.TestStepResult_TEST_STEP_RESULT_OK:      "[ok]  ",
				mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED:  "[FAIL]",
				mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED: "[skip]",
			}[s.GetResult()]
			step := strings.ToLower(strings.TrimPrefix(s.GetKind().String(), "TEST_STEP_KIND_"))
			line := fmt.Sprintf("%s %-9s %6dms  %s", mark, step, s.GetDuration().AsDuration().Milliseconds(), s.GetDetail())
			fmt.Fprintln(a.stdout, strings.TrimRight(line, " "))
			if s.GetError() != "" {
				fmt.Fprintf(a.stdout, "       %s\n", s.GetError())
			}
			if af := s.GetAuthFailure(); af != nil && af.GetAction() != "" {
				fmt.Fprintf(a.stdout, "       what to do: %s\n", af.GetAction())
			}
		}
	}
	if !resp.GetOk() {
		return &failure{msg: "the connection test failed"}
	}
	return nil
}

func (a *app) mailboxAuthorize(ctx context.Context, args []string) error {
	fs := a.newFlags("mailbox authorize", "mailbox authorize ID [--no-wait]")
	noWait := fs.Bool("no-wait", false, "print the sign-in instructions and return without waiting")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("mailbox authorize takes one mailbox ID")
	}
	cl, err := a.connect()
	if err != nil {
		return err
	}
	rctx, cancel := a.rpcCtx(ctx)
	resp, err := cl.Providers.BeginAuthorization(rctx, &mailintakev1.BeginAuthorizationRequest{MailboxId: pos[0]})
	cancel()
	if err != nil {
		return err
	}
	auth := resp.GetAuthorization()
	if a.g.json {
		if err := a.printJSON(auth); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.stdout, auth.GetMessage())
		fmt.Fprintf(a.stdout, "  URL:  %s\n  code: %s\n", auth.GetVerificationUri(), auth.GetUserCode())
		if auth.GetExpireTime() != nil {
			fmt.Fprintf(a.stdout, "  the code expires at %s\n", auth.GetExpireTime().AsTime().Local().Format("15:04:05"))
		}
	}
	if *noWait {
		return nil
	}
	if !a.g.json {
		fmt.Fprintln(a.stderr, "waiting for the sign-in (Ctrl-C stops waiting; the server keeps polling)…")
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		rctx, cancel := a.rpcCtx(ctx)
		g, err := cl.Providers.GetAuthorization(rctx, &mailintakev1.GetAuthorizationRequest{MailboxId: pos[0]})
		cancel()
		if err != nil {
			return err
		}
		auth = g.GetAuthorization()
		switch auth.GetState() {
		case mailintakev1.AuthorizationState_AUTHORIZATION_STATE_COMPLETED:
			if a.g.json {
				return a.printJSON(auth)
			}
			fmt.Fprintln(a.stdout, "signed in: the mailbox connects now")
			return nil
		case mailintakev1.AuthorizationState_AUTHORIZATION_STATE_FAILED, mailintakev1.AuthorizationState_AUTHORIZATION_STATE_EXPIRED:
			f := auth.GetFailure()
			msg := "the sign-in did not complete: " + f.GetMessage()
			if f.GetAction() != "" {
				msg += "\n  what to do: " + f.GetAction()
			}
			return &failure{msg: msg}
		}
	}
}

// printMailbox prints a mailbox as JSON or as an aligned list of its fields.
func (a *app) printMailbox(mb *mailintakev1.Mailbox) error {
	if a.g.json {
		return a.printJSON(mb)
	}
	w := bufio.NewWriter(a.stdout)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-14s %s\n", k+":", v)
		}
	}
	line("id", mb.GetId())
	line("tenant", mb.GetTenant())
	line("name", mb.GetDisplayName())
	line("enabled", fmt.Sprint(mb.GetEnabled()))
	line("server", server(mb))
	line("username", mb.GetUsername())
	line("provider", mb.GetAuthProvider())
	keys := make([]string, 0, len(mb.GetAuthConfig()))
	for k := range mb.GetAuthConfig() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		line("  "+k, mb.GetAuthConfig()[k])
	}
	if len(mb.GetAuthSecretsSet()) > 0 {
		line("secrets set", strings.Join(mb.GetAuthSecretsSet(), ", "))
	}
	line("folder", mb.GetFolder())
	aa := strings.ToLower(strings.TrimPrefix(mb.GetAfterAck().GetAction().String(), "AFTER_ACK_ACTION_"))
	if f := mb.GetAfterAck().GetFolder(); f != "" {
		aa += " to " + f
	}
	line("after ack", aa)
	line("start from", strings.ToLower(strings.TrimPrefix(mb.GetStartFrom().String(), "START_FROM_")))
	line("ticket pattern", mb.GetTicketPattern())
	if mb.GetCreateTime() != nil {
		line("created", mb.GetCreateTime().AsTime().Format("2006-01-02 15:04:05 MST"))
	}
	return w.Flush()
}

// idOrDefinition reads the target of test and dry-run: a saved mailbox's id, or an unsaved
// definition from the add flags (with its secrets).
func (a *app) idOrDefinition(ctx context.Context, cmd string, fs *flag.FlagSet, d *defFlags, pos []string) (string, *mailintakev1.Mailbox, error) {
	switch len(pos) {
	case 1:
		return pos[0], nil, nil
	case 0:
		mb, _, err := d.build(fs, a, true)
		if err != nil {
			return "", nil, err
		}
		if !d.passwordStdin && !d.secretStdin {
			if err := a.promptSecrets(ctx, mb); err != nil {
				return "", nil, err
			}
		}
		return "", mb, nil
	}
	return "", nil, usagef("mailbox %s takes one mailbox ID, or the mailbox add flags", cmd)
}
