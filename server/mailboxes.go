package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/store"
	replicav1 "github.com/mailintake/mailintake/proto/mailintake/replica/v1"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// mailboxService implements MailboxService.
type mailboxService struct {
	mailintakev1.UnimplementedMailboxServiceServer
	s *Server
}

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// present returns a stored mailbox as the API shows it: secrets never, their names only.
func present(mb *store.Mailbox) *mailintakev1.Mailbox {
	out := proto.CloneOf(mb.Spec)
	out.AuthSecrets = nil
	out.AuthSecretsSet = slices.Sorted(maps.Keys(mb.Secrets))
	return out
}

func sealAll(m map[string]string) map[string]secrets.Secret {
	out := make(map[string]secrets.Secret, len(m))
	for k, v := range m {
		out[k] = secrets.Secret(v)
	}
	return out
}

// load returns a mailbox the caller may see; another tenant's mailbox is reported as not
// found, so its existence does not leak.
func (m *mailboxService) load(ctx context.Context, field, id string) (*store.Mailbox, error) {
	if id == "" {
		return nil, violations{{Field: field, Description: "is required"}}.err()
	}
	mb, err := m.s.store.GetMailbox(ctx, id)
	if err == store.ErrNotFound || (err == nil && !caller(ctx).canSee(mb.Spec.Tenant)) {
		return nil, notFound("mailbox", id)
	}
	return mb, err
}

// resolveTenant decides the tenant of a new mailbox from the caller and the request.
func resolveTenant(p Principal, requested, field string) (string, error) {
	if !p.Admin {
		if requested != "" && requested != p.Tenant {
			return "", permission("a token of tenant %q cannot create mailboxes of tenant %q", p.Tenant, requested)
		}
		return p.Tenant, nil
	}
	if !tenantPattern.MatchString(requested) {
		return "", violations{{Field: field, Description: "is required with the admin token: the tenant (PSA customer) the mailbox belongs to"}}.err()
	}
	return requested, nil
}

func (m *mailboxService) CreateMailbox(ctx context.Context, req *mailintakev1.CreateMailboxRequest) (*mailintakev1.CreateMailboxResponse, error) {
	if req.GetMailbox() == nil {
		return nil, violations{{Field: "mailbox", Description: "is required"}}.err()
	}
	mb := proto.CloneOf(req.GetMailbox())
	tenant, err := resolveTenant(caller(ctx), mb.Tenant, "mailbox.tenant")
	if err != nil {
		return nil, err
	}
	sec := mb.AuthSecrets
	now := timestamppb.New(m.s.now())
	mb.Id = uuid.Must(uuid.NewV7()).String()
	mb.Tenant = tenant
	mb.AuthSecrets, mb.AuthSecretsSet = nil, nil
	mb.CreateTime, mb.UpdateTime = now, now
	normalize(mb)
	if err := m.s.validateMailbox(ctx, "mailbox.", mb, sec); err != nil {
		return nil, err
	}
	stored := &store.Mailbox{Spec: mb, Secrets: sealAll(sec)}
	if err := m.s.store.CreateMailbox(ctx, stored); err != nil {
		return nil, err
	}
	m.s.log.InfoContext(ctx, "mailbox created", "mailbox_id", mb.Id, "tenant", mb.Tenant, "provider", mb.AuthProvider, "host", mb.Host)
	m.s.addEvent(ctx, mb.Id, "config", "mailbox created")
	m.s.reload(ctx, mb.Id)
	return &mailintakev1.CreateMailboxResponse{Mailbox: present(stored)}, nil
}

func (m *mailboxService) GetMailbox(ctx context.Context, req *mailintakev1.GetMailboxRequest) (*mailintakev1.GetMailboxResponse, error) {
	mb, err := m.load(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	return &mailintakev1.GetMailboxResponse{Mailbox: present(mb)}, nil
}

func (m *mailboxService) ListMailboxes(ctx context.Context, req *mailintakev1.ListMailboxesRequest) (*mailintakev1.ListMailboxesResponse, error) {
	var v violations
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > maxPageSize:
		v.add("page_size", "must be between 0 and %d", maxPageSize)
	case size == 0:
		size = defaultPageSize
	}
	var after string
	if t := req.GetPageToken(); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil || len(b) == 0 {
			v.add("page_token", "is not a token from a previous response")
		}
		after = string(b)
	}
	p := caller(ctx)
	tenant := req.GetTenant()
	if !p.Admin {
		if tenant != "" && tenant != p.Tenant {
			return nil, permission("a token of tenant %q cannot list tenant %q", p.Tenant, tenant)
		}
		tenant = p.Tenant
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	mbs, err := m.s.store.ListMailboxes(ctx, store.MailboxQuery{Tenant: tenant, AfterID: after, Limit: size + 1})
	if err != nil {
		return nil, err
	}
	resp := &mailintakev1.ListMailboxesResponse{}
	if len(mbs) > size {
		mbs = mbs[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(mbs[size-1].Spec.Id))
	}
	for _, mb := range mbs {
		resp.Mailboxes = append(resp.Mailboxes, present(mb))
	}
	return resp, nil
}

// updatable lists the field mask paths UpdateMailbox accepts.
var updatable = map[string]func(dst, src *mailintakev1.Mailbox){
	"display_name":         func(d, s *mailintakev1.Mailbox) { d.DisplayName = s.DisplayName },
	"enabled":              func(d, s *mailintakev1.Mailbox) { d.Enabled = s.Enabled },
	"protocol":             func(d, s *mailintakev1.Mailbox) { d.Protocol = s.Protocol },
	"host":                 func(d, s *mailintakev1.Mailbox) { d.Host = s.Host },
	"port":                 func(d, s *mailintakev1.Mailbox) { d.Port = s.Port },
	"security":             func(d, s *mailintakev1.Mailbox) { d.Security = s.Security },
	"ca_pem":               func(d, s *mailintakev1.Mailbox) { d.CaPem = s.CaPem },
	"insecure_skip_verify": func(d, s *mailintakev1.Mailbox) { d.InsecureSkipVerify = s.InsecureSkipVerify },
	"username":             func(d, s *mailintakev1.Mailbox) { d.Username = s.Username },
	"auth_provider":        func(d, s *mailintakev1.Mailbox) { d.AuthProvider = s.AuthProvider },
	"auth_config":          func(d, s *mailintakev1.Mailbox) { d.AuthConfig = s.AuthConfig },
	"auth_secrets":         func(d, s *mailintakev1.Mailbox) {}, // merged separately
	"folder":               func(d, s *mailintakev1.Mailbox) { d.Folder = s.Folder },
	"after_ack":            func(d, s *mailintakev1.Mailbox) { d.AfterAck = s.AfterAck },
	"start_from":           func(d, s *mailintakev1.Mailbox) { d.StartFrom = s.StartFrom },
	"limits":               func(d, s *mailintakev1.Mailbox) { d.Limits = s.Limits },
	"ticket_pattern":       func(d, s *mailintakev1.Mailbox) { d.TicketPattern = s.TicketPattern },
	"sending_enabled":      func(d, s *mailintakev1.Mailbox) { d.SendingEnabled = s.SendingEnabled },
	"smtp_host":            func(d, s *mailintakev1.Mailbox) { d.SmtpHost = s.SmtpHost },
	"smtp_port":            func(d, s *mailintakev1.Mailbox) { d.SmtpPort = s.SmtpPort },
	"smtp_security":        func(d, s *mailintakev1.Mailbox) { d.SmtpSecurity = s.SmtpSecurity },
	"smtp_from":            func(d, s *mailintakev1.Mailbox) { d.SmtpFrom = s.SmtpFrom },
	"smtp_max_per_minute":  func(d, s *mailintakev1.Mailbox) { d.SmtpMaxPerMinute = s.SmtpMaxPerMinute },
	"save_sent_copy":       func(d, s *mailintakev1.Mailbox) { d.SaveSentCopy = s.SaveSentCopy },
	"sent_folder":          func(d, s *mailintakev1.Mailbox) { d.SentFolder = s.SentFolder },
	"poll_interval":        func(d, s *mailintakev1.Mailbox) { d.PollInterval = s.PollInterval },
}

func (m *mailboxService) UpdateMailbox(ctx context.Context, req *mailintakev1.UpdateMailboxRequest) (*mailintakev1.UpdateMailboxResponse, error) {
	in := req.GetMailbox()
	if in == nil {
		return nil, violations{{Field: "mailbox", Description: "is required"}}.err()
	}
	var v violations
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		v.add("update_mask", "is required: name the fields to change, e.g. display_name,enabled")
	}
	for _, p := range paths {
		if _, ok := updatable[p]; !ok {
			v.add("update_mask", "%q cannot be updated (id, tenant and output-only fields are fixed)", p)
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	cur, err := m.load(ctx, "mailbox.id", in.GetId())
	if err != nil {
		return nil, err
	}
	next := proto.CloneOf(cur.Spec)
	sec := cur.RevealedSecrets()
	for _, p := range paths {
		updatable[p](next, in)
	}
	if slices.Contains(paths, "security") && !slices.Contains(paths, "port") && cur.Spec.GetPort() == defaultPort(cur.Spec.GetProtocol(), cur.Spec.GetSecurity()) {
		// The usual port of the old security follows the new one (993 → 143 for STARTTLS); a
		// port of the admin's own choosing stays.
		next.Port = 0
	}
	if next.AuthProvider != cur.Spec.AuthProvider {
		// Another provider's secrets mean nothing to the new one.
		sec = map[string]string{}
	}
	if slices.Contains(paths, "auth_secrets") {
		for k, val := range in.AuthSecrets {
			if val == "" {
				delete(sec, k)
			} else {
				sec[k] = val
			}
		}
	}
	next.UpdateTime = timestamppb.New(m.s.now())
	normalize(next)
	if next.Protocol != cur.Spec.Protocol {
		// The checkpoint, acknowledgements and message ids of one protocol mean nothing to the
		// other (IMAP UIDs against POP3's unique-id checkpoint).
		return nil, violations{{Field: "mailbox.protocol", Description: fmt.Sprintf(
			"cannot change from %s to %s: a mailbox keeps its protocol (its checkpoint and message ids belong to it); add a new mailbox instead",
			protocolName(cur.Spec.Protocol), protocolName(next.Protocol))}}.err()
	}
	if err := m.s.validateMailbox(ctx, "mailbox.", next, sec); err != nil {
		return nil, err
	}
	stored := &store.Mailbox{Spec: next, Secrets: sealAll(sec)}
	if err := m.s.store.UpdateMailbox(ctx, stored); err != nil {
		return nil, err
	}
	m.s.plugins.Invalidate(next.Id)
	m.s.log.InfoContext(ctx, "mailbox updated", "mailbox_id", next.Id, "fields", paths)
	m.s.addEvent(ctx, next.Id, "config", "mailbox updated: "+strings.Join(paths, ", "))
	m.s.reload(ctx, next.Id)
	m.s.outbox.Wake() // sending may have been turned on for queued mail
	return &mailintakev1.UpdateMailboxResponse{Mailbox: present(stored)}, nil
}

func (m *mailboxService) DeleteMailbox(ctx context.Context, req *mailintakev1.DeleteMailboxRequest) (*mailintakev1.DeleteMailboxResponse, error) {
	mb, err := m.load(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	if err := m.s.store.DeleteMailbox(ctx, mb.Spec.Id); err != nil {
		return nil, err
	}
	m.s.reload(ctx, mb.Spec.Id)
	m.s.log.InfoContext(ctx, "mailbox deleted", "mailbox_id", mb.Spec.Id)
	return &mailintakev1.DeleteMailboxResponse{}, nil
}

// target resolves a saved mailbox or validates an unsaved definition, for TestConnection and
// PreviewFirstSync. Nothing is stored.
func (m *mailboxService) target(ctx context.Context, id string, def *mailintakev1.Mailbox) (*mailintakev1.Mailbox, map[string]string, error) {
	if id != "" {
		mb, err := m.load(ctx, "id", id)
		if err != nil {
			return nil, nil, err
		}
		return mb.Spec, mb.RevealedSecrets(), nil
	}
	if def == nil {
		return nil, nil, violations{{Field: "target", Description: "give a mailbox id or a mailbox definition"}}.err()
	}
	mb := proto.CloneOf(def)
	// Testing creates nothing: the admin token needs no tenant here (one given is still checked).
	tenant := ""
	if p := caller(ctx); !p.Admin || mb.Tenant != "" {
		var err error
		if tenant, err = resolveTenant(p, mb.Tenant, "mailbox.tenant"); err != nil {
			return nil, nil, err
		}
	}
	sec := mb.AuthSecrets
	mb.Id, mb.Tenant, mb.AuthSecrets, mb.AuthSecretsSet = "", tenant, nil, nil
	normalize(mb)
	if err := m.s.validateMailbox(ctx, "mailbox.", mb, sec); err != nil {
		return nil, nil, err
	}
	return mb, sec, nil
}

func (m *mailboxService) TestConnection(ctx context.Context, req *mailintakev1.TestConnectionRequest) (*mailintakev1.TestConnectionResponse, error) {
	resp, _, err := m.test(ctx, req, nil)
	return resp, err
}

// StreamConnectionTest runs TestConnection's test and sends its plan, each step as it starts and
// ends, and the summary. A stored mailbox another replica owns is tested there, streamed
// through ReplicaService.StreamConnectionTest (an owner without it answers at the end, through
// ReplicaService.TestConnection: its steps are sent then).
func (m *mailboxService) StreamConnectionTest(req *mailintakev1.StreamConnectionTestRequest, stream grpc.ServerStreamingServer[mailintakev1.StreamConnectionTestResponse]) error {
	return m.streamTest(stream.Context(), req, stream.Send)
}

// streamTest is StreamConnectionTest sending its events to send, for the API and for the
// replica that owns the mailbox.
func (m *mailboxService) streamTest(ctx context.Context, req *mailintakev1.StreamConnectionTestRequest, send func(*mailintakev1.StreamConnectionTestResponse) error) error {
	if c := m.s.ownerOf(ctx, req.GetId()); c != nil {
		if relayed, err := relayTest(ctx, c, req, send); relayed {
			return err
		}
		// An owner of an earlier release: its answer comes at the end.
	}
	treq := &mailintakev1.TestConnectionRequest{}
	switch t := req.GetTarget().(type) {
	case *mailintakev1.StreamConnectionTestRequest_Id:
		treq.Target = &mailintakev1.TestConnectionRequest_Id{Id: t.Id}
	case *mailintakev1.StreamConnectionTestRequest_Mailbox:
		treq.Target = &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: t.Mailbox}
	}
	var sendErr error
	emit := func(r *mailintakev1.StreamConnectionTestResponse) {
		if sendErr == nil {
			sendErr = send(r)
		}
	}
	step := func(st *mailintakev1.TestStep) {
		emit(&mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Step{Step: st}})
	}
	plan := func(kinds []mailintakev1.TestStepKind) {
		emit(&mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Plan{Plan: &mailintakev1.TestPlan{Steps: kinds}}})
	}
	resp, forwarded, err := m.test(ctx, treq, &testStream{plan: plan, step: step})
	if err != nil {
		return err
	}
	if forwarded {
		var kinds []mailintakev1.TestStepKind
		for _, st := range resp.GetSteps() {
			kinds = append(kinds, st.GetKind())
		}
		plan(kinds)
		for _, st := range resp.GetSteps() {
			step(st)
		}
	}
	emit(&mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Summary{Summary: resp}})
	return sendErr
}

// testStream receives a test's plan and steps as it runs.
type testStream struct {
	plan func([]mailintakev1.TestStepKind)
	step func(*mailintakev1.TestStep)
}

// test runs a connection test for TestConnection and StreamConnectionTest, here or, for a stored
// mailbox another replica owns, there (forwarded: the steps come with the answer, not to out).
func (m *mailboxService) test(ctx context.Context, req *mailintakev1.TestConnectionRequest, out *testStream) (resp *mailintakev1.TestConnectionResponse, forwarded bool, err error) {
	if c := m.s.ownerOf(ctx, req.GetId()); c != nil {
		// Only the owner connects to a stored mailbox; it checks the request as this caller.
		r, err := c.TestConnection(ctx, &replicav1.TestConnectionRequest{Scope: scope(caller(ctx), nil), Request: req})
		if err != nil {
			return nil, true, err
		}
		return r.GetResponse(), true, nil
	}
	mb, sec, err := m.target(ctx, req.GetId(), req.GetMailbox())
	if err != nil {
		return nil, false, err
	}
	var onStep func(*mailintakev1.TestStep)
	if out != nil {
		out.plan(session.PlanTest(mb))
		onStep = out.step
	}
	resp = m.s.sessions.TestSteps(ctx, mb, sec, onStep)
	if mb.GetId() != "" {
		result := "passed"
		if !resp.GetOk() {
			result = "failed"
		}
		m.s.addEvent(ctx, mb.GetId(), "test", "connection test "+result)
	}
	return resp, false, nil
}

func (m *mailboxService) PreviewFirstSync(ctx context.Context, req *mailintakev1.PreviewFirstSyncRequest) (*mailintakev1.PreviewFirstSyncResponse, error) {
	if c := m.s.ownerOf(ctx, req.GetId()); c != nil {
		r, err := c.PreviewFirstSync(ctx, &replicav1.PreviewFirstSyncRequest{Scope: scope(caller(ctx), nil), Request: req})
		if err != nil {
			return nil, err
		}
		return r.GetResponse(), nil
	}
	mb, sec, err := m.target(ctx, req.GetId(), req.GetMailbox())
	if err != nil {
		return nil, err
	}
	resp, err := m.s.sessions.Preview(ctx, mb, sec)
	if err != nil {
		return nil, connectionFailed(err)
	}
	return resp, nil
}

func (m *mailboxService) GetMailboxStatus(ctx context.Context, req *mailintakev1.GetMailboxStatusRequest) (*mailintakev1.GetMailboxStatusResponse, error) {
	mb, err := m.load(ctx, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	st := m.s.liveStatus(ctx, mb.Spec.Id)
	if st == nil {
		st = &mailintakev1.MailboxStatus{MailboxId: mb.Spec.Id, State: mailintakev1.MailboxState_MAILBOX_STATE_CONNECTING, Message: "starting"}
	}
	if msg, at := m.s.storeFailure(); msg != "" && (st.GetLastErrorTime() == nil || at.After(st.GetLastErrorTime().AsTime())) {
		// The server's own store failed (e.g. the disk is full): acknowledgements cannot be
		// recorded, whatever the mailbox's session is doing.
		st.LastError, st.LastErrorTime = msg, timestamppb.New(at)
	}
	st.Warnings = append(st.Warnings, m.s.sendingWarnings(ctx, mb.Spec.Id)...)
	return &mailintakev1.GetMailboxStatusResponse{Status: st}, nil
}

func (m *mailboxService) ListMailboxEvents(ctx context.Context, req *mailintakev1.ListMailboxEventsRequest) (*mailintakev1.ListMailboxEventsResponse, error) {
	mb, err := m.load(ctx, "mailbox_id", req.GetMailboxId())
	if err != nil {
		return nil, err
	}
	var v violations
	size := int(req.GetPageSize())
	switch {
	case size < 0 || size > store.MaxEventsPerMailbox:
		v.add("page_size", "must be between 0 and %d", store.MaxEventsPerMailbox)
	case size == 0:
		size = 100
	}
	var before int64
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n <= 0 {
			v.add("page_token", "is not a token from a previous response")
		}
		before = n
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	evs, err := m.s.store.ListEvents(ctx, mb.Spec.Id, before, size+1)
	if err != nil {
		return nil, err
	}
	resp := &mailintakev1.ListMailboxEventsResponse{}
	if len(evs) > size {
		evs = evs[:size]
		resp.NextPageToken = strconv.FormatInt(evs[size-1].ID, 10)
	}
	for _, e := range evs {
		resp.Events = append(resp.Events, &mailintakev1.MailboxEvent{Id: e.ID, Time: timestamppb.New(e.Time), Kind: e.Kind, Message: e.Message,
			Count: int32(e.Count), FirstTime: timestamppb.New(e.FirstTime)})
	}
	return resp, nil
}

// protocolName names a protocol as the CLI does ("imap", "pop3").
func protocolName(p mailintakev1.Protocol) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "PROTOCOL_"))
}
