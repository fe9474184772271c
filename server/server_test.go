package server

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailintake/mailintake/internal/delivery"
	"github.com/mailintake/mailintake/internal/metrics"
	"github.com/mailintake/mailintake/internal/pluginhost"
	"github.com/mailintake/mailintake/internal/secrets"
	"github.com/mailintake/mailintake/internal/session"
	"github.com/mailintake/mailintake/internal/store"
	"github.com/mailintake/mailintake/internal/store/sqlite"
	"github.com/mailintake/mailintake/internal/testutil"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

const password = "Tr0ub4dor&3-known-password"

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// env is a server on bufconn with the real interceptors, store and plugins.
type env struct {
	t       testing.TB
	dir     string
	logs    *logBuffer
	conn    *grpc.ClientConn
	admin   string
	srv     *Server
	mu      sync.Mutex
	seen    []proto.Message // every response, to scan for secrets
	mailbox mailintakev1.MailboxServiceClient
	tokens  mailintakev1.TokenServiceClient
	provs   mailintakev1.AuthProviderServiceClient
	msgs    mailintakev1.MessageServiceClient
}

func newEnv(t testing.TB, plugins ...func(*pluginhost.Options)) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, dir: t.TempDir(), logs: &logBuffer{}}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
	box, err := secrets.NewBox(bytes.Repeat([]byte{3}, secrets.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, e.dir, box)
	if err != nil {
		t.Fatal(err)
	}
	hopts := pluginhost.Options{Dir: testutil.PluginDir(t), State: st, Logger: log}
	for _, o := range plugins {
		o(&hopts)
	}
	host := pluginhost.New(hopts)
	broker := delivery.New(st)
	sup := session.NewSupervisor(st, host, broker, metrics.New(), log, session.Options{
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, AuthBackoff: time.Hour, CommandTimeout: 10 * time.Second})
	sctx, stopSessions := context.WithCancel(ctx)
	if err := sup.Start(sctx); err != nil {
		t.Fatal(err)
	}
	e.srv = New(Options{Store: st, Plugins: host, Sessions: sup, Broker: broker, Logger: log})
	tokenPath := filepath.Join(e.dir, AdminTokenFile)
	if _, err := EnsureAdminToken(ctx, st, tokenPath, e.srv.now(), false); err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(tokenPath)
	e.admin = strings.TrimSpace(string(tok))

	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer(e.srv.ServerOptions()...)
	e.srv.Register(g)
	go g.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			e.mu.Lock()
			e.seen = append(e.seen, proto.CloneOf(reply.(proto.Message)))
			e.mu.Unlock()
			return err
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		stopSessions()
		sup.Wait()
		broker.Close()
		host.Close()
		st.Close()
	})
	e.conn = conn
	e.mailbox = mailintakev1.NewMailboxServiceClient(conn)
	e.tokens = mailintakev1.NewTokenServiceClient(conn)
	e.provs = mailintakev1.NewAuthProviderServiceClient(conn)
	e.msgs = mailintakev1.NewMessageServiceClient(conn)
	return e
}

func as(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

func (e *env) tenantToken(tenant string) string {
	e.t.Helper()
	resp, err := e.tokens.CreateToken(as(e.admin), &mailintakev1.CreateTokenRequest{Tenant: tenant, Name: "psa"})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.GetSecret()
}

func validMailbox(tenant string) *mailintakev1.Mailbox {
	return &mailintakev1.Mailbox{
		Tenant: tenant, DisplayName: "Support", Enabled: true, Host: "imap.example.com", Port: 993,
		Security: mailintakev1.Security_SECURITY_TLS, Username: "support@example.com", AuthProvider: "basic",
		AuthSecrets: map[string]string{"password": password},
	}
}

func (e *env) create(token string, mb *mailintakev1.Mailbox) *mailintakev1.Mailbox {
	e.t.Helper()
	resp, err := e.mailbox.CreateMailbox(as(token), &mailintakev1.CreateMailboxRequest{Mailbox: mb})
	if err != nil {
		e.t.Fatalf("CreateMailbox: %v", err)
	}
	return resp.GetMailbox()
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: got %v, want %v", what, err, code)
	}
}

// badFields returns the fields named by an InvalidArgument error's BadRequest detail.
func badFields(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.mailbox.ListMailboxes(ctx, &mailintakev1.ListMailboxesRequest{})
	wantCode(t, "no token", err, codes.Unauthenticated)
	for _, tok := range []string{"garbage", "mit_", "mit_0123456789abcdef_x", e.admin + "x", strings.Replace(e.admin, "mit_", "mit_f", 1)} {
		_, err = e.mailbox.ListMailboxes(as(tok), &mailintakev1.ListMailboxesRequest{})
		wantCode(t, "bad token "+tok[:min(len(tok), 8)], err, codes.Unauthenticated)
	}
	md := metadata.AppendToOutgoingContext(ctx, "authorization", "Basic "+e.admin)
	_, err = e.mailbox.ListMailboxes(md, &mailintakev1.ListMailboxesRequest{})
	wantCode(t, "Basic scheme", err, codes.Unauthenticated)

	// Health needs no token; reflection does.
	hc, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "mailintake.v1.MailboxService"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v", hc, err)
	}

	// A revoked token stops working at once.
	tok := e.tenantToken("acme")
	if _, err := e.mailbox.ListMailboxes(as(tok), &mailintakev1.ListMailboxesRequest{}); err != nil {
		t.Fatal(err)
	}
	list, _ := e.tokens.ListTokens(as(e.admin), &mailintakev1.ListTokensRequest{})
	var id string
	for _, tk := range list.GetTokens() {
		if tk.GetTenant() == "acme" {
			id = tk.GetId()
		}
	}
	if _, err := e.tokens.RevokeToken(as(e.admin), &mailintakev1.RevokeTokenRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	_, err = e.mailbox.ListMailboxes(as(tok), &mailintakev1.ListMailboxesRequest{})
	wantCode(t, "revoked token", err, codes.Unauthenticated)
}

func TestReflectionListsServices(t *testing.T) {
	e := newEnv(t)
	stream, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(as(e.admin))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"mailintake.v1.MailboxService", "mailintake.v1.MessageService", "mailintake.v1.AuthProviderService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	acme := e.tenantToken("acme")
	globex := e.tenantToken("globex")
	mine := e.create(acme, validMailbox(""))
	if mine.GetTenant() != "acme" {
		t.Fatalf("tenant = %q, want acme (from the token)", mine.GetTenant())
	}
	e.create(e.admin, validMailbox("globex"))

	id := mine.GetId()
	ctx := as(globex)
	_, err := e.mailbox.GetMailbox(ctx, &mailintakev1.GetMailboxRequest{Id: id})
	wantCode(t, "Get of another tenant's mailbox", err, codes.NotFound)
	_, err = e.mailbox.UpdateMailbox(ctx, &mailintakev1.UpdateMailboxRequest{Mailbox: &mailintakev1.Mailbox{Id: id, DisplayName: "x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
	wantCode(t, "Update", err, codes.NotFound)
	_, err = e.mailbox.DeleteMailbox(ctx, &mailintakev1.DeleteMailboxRequest{Id: id})
	wantCode(t, "Delete", err, codes.NotFound)
	_, err = e.mailbox.GetMailboxStatus(ctx, &mailintakev1.GetMailboxStatusRequest{Id: id})
	wantCode(t, "Status", err, codes.NotFound)
	_, err = e.mailbox.TestConnection(ctx, &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Id{Id: id}})
	wantCode(t, "Test", err, codes.NotFound)
	_, err = e.provs.BeginAuthorization(ctx, &mailintakev1.BeginAuthorizationRequest{MailboxId: id})
	wantCode(t, "BeginAuthorization", err, codes.NotFound)
	_, err = e.mailbox.CreateMailbox(ctx, &mailintakev1.CreateMailboxRequest{Mailbox: validMailbox("acme")})
	wantCode(t, "Create in another tenant", err, codes.PermissionDenied)
	_, err = e.mailbox.ListMailboxes(ctx, &mailintakev1.ListMailboxesRequest{Tenant: "acme"})
	wantCode(t, "List another tenant", err, codes.PermissionDenied)
	_, err = e.tokens.CreateToken(ctx, &mailintakev1.CreateTokenRequest{Tenant: "acme"})
	wantCode(t, "CreateToken with a tenant token", err, codes.PermissionDenied)
	_, err = e.tokens.ListTokens(ctx, &mailintakev1.ListTokensRequest{})
	wantCode(t, "ListTokens with a tenant token", err, codes.PermissionDenied)

	list, err := e.mailbox.ListMailboxes(ctx, &mailintakev1.ListMailboxesRequest{})
	if err != nil || len(list.GetMailboxes()) != 1 || list.GetMailboxes()[0].GetTenant() != "globex" {
		t.Errorf("globex sees %v, %v", list.GetMailboxes(), err)
	}
	all, err := e.mailbox.ListMailboxes(as(e.admin), &mailintakev1.ListMailboxesRequest{})
	if err != nil || len(all.GetMailboxes()) != 2 {
		t.Errorf("admin sees %d mailboxes, %v", len(all.GetMailboxes()), err)
	}
	// The owner still can.
	if _, err := e.mailbox.GetMailbox(as(acme), &mailintakev1.GetMailboxRequest{Id: id}); err != nil {
		t.Errorf("owner Get: %v", err)
	}
}

func TestValidationNamesFieldsAndWritesNothing(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name  string
		edit  func(*mailintakev1.Mailbox)
		field string
	}{
		{"empty host", func(m *mailintakev1.Mailbox) { m.Host = "" }, "mailbox.host"},
		{"bad host", func(m *mailintakev1.Mailbox) { m.Host = "imap example.com" }, "mailbox.host"},
		{"port 70000", func(m *mailintakev1.Mailbox) { m.Port = 70000 }, "mailbox.port"},
		{"unknown provider", func(m *mailintakev1.Mailbox) { m.AuthProvider = "nope" }, "mailbox.auth_provider"},
		{"unknown security", func(m *mailintakev1.Mailbox) { m.Security = 9 }, "mailbox.security"},
		{"provider rejects a field", func(m *mailintakev1.Mailbox) { m.AuthConfig = map[string]string{"mechanism": "CRAM-MD5"} }, "mailbox.auth_config.mechanism"},
		{"provider wants a secret", func(m *mailintakev1.Mailbox) { m.AuthSecrets = nil }, "mailbox.auth_secrets.password"},
		{"no username", func(m *mailintakev1.Mailbox) { m.Username = "" }, "mailbox.username"},
		// The provider's secret flag decides where a field lives, not its name.
		{"a secret in the config", func(m *mailintakev1.Mailbox) { m.AuthConfig = map[string]string{"password": "x"} }, "mailbox.auth_config.password"},
		{"a setting in the secrets", func(m *mailintakev1.Mailbox) { m.AuthSecrets["mechanism"] = "PLAIN" }, "mailbox.auth_secrets.mechanism"},
		{"a required setting named like a secret", func(m *mailintakev1.Mailbox) {
			m.AuthProvider, m.AuthConfig, m.AuthSecrets = "fake", map[string]string{"behavior": "needs-password-file"}, nil
		}, "mailbox.auth_config.password_file"},
		{"move without folder", func(m *mailintakev1.Mailbox) {
			m.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE}
		}, "mailbox.after_ack.folder"},
		{"bad ticket pattern", func(m *mailintakev1.Mailbox) { m.TicketPattern = "([" }, "mailbox.ticket_pattern"},
		{"bad CA", func(m *mailintakev1.Mailbox) { m.CaPem = "not a certificate" }, "mailbox.ca_pem"},
		{"no tenant with the admin token", func(m *mailintakev1.Mailbox) { m.Tenant = "" }, "mailbox.tenant"},
		{"POP3 with MARK_SEEN", func(m *mailintakev1.Mailbox) {
			m.Protocol = mailintakev1.Protocol_PROTOCOL_POP3
			m.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MARK_SEEN}
		}, "mailbox.after_ack.action"},
		{"POP3 with MOVE", func(m *mailintakev1.Mailbox) {
			m.Protocol = mailintakev1.Protocol_PROTOCOL_POP3
			m.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MOVE, Folder: "Done"}
		}, "mailbox.after_ack.action"},
		{"POP3 polled every second", func(m *mailintakev1.Mailbox) {
			m.Protocol, m.PollInterval = mailintakev1.Protocol_PROTOCOL_POP3, durationpb.New(time.Second)
		}, "mailbox.poll_interval"},
		{"POP3 with another folder", func(m *mailintakev1.Mailbox) {
			m.Protocol, m.Folder = mailintakev1.Protocol_PROTOCOL_POP3, "Archive"
		}, "mailbox.folder"},
		{"a poll interval for IMAP", func(m *mailintakev1.Mailbox) { m.PollInterval = durationpb.New(time.Minute) }, "mailbox.poll_interval"},
		{"POP3 through a provider that serves only IMAP", func(m *mailintakev1.Mailbox) {
			m.Protocol, m.AuthProvider, m.AuthSecrets = mailintakev1.Protocol_PROTOCOL_POP3, "fake", nil
		}, "mailbox.protocol"},
	}
	for _, c := range cases {
		mb := validMailbox("acme")
		c.edit(mb)
		_, err := e.mailbox.CreateMailbox(as(e.admin), &mailintakev1.CreateMailboxRequest{Mailbox: mb})
		wantCode(t, c.name, err, codes.InvalidArgument)
		if f := badFields(err); !slices.Contains(f, c.field) {
			t.Errorf("%s: BadRequest names %v, want %s", c.name, f, c.field)
		}
	}
	_, err := e.mailbox.CreateMailbox(as(e.admin), &mailintakev1.CreateMailboxRequest{})
	wantCode(t, "no mailbox", err, codes.InvalidArgument)
	list, _ := e.mailbox.ListMailboxes(as(e.admin), &mailintakev1.ListMailboxesRequest{})
	if n := len(list.GetMailboxes()); n != 0 {
		t.Errorf("invalid requests wrote %d mailboxes", n)
	}
}

// Port 0 is the protocol's usual port for the security, as an admin typing a mailbox into
// grpcurl expects: 993 with implicit TLS, 143 with STARTTLS or none; an update that clears the
// port gets it back, and one that changes the security alone moves the usual port with it. Out of range is still refused (TestValidationNamesFieldsAndWritesNothing).
func TestIMAPDefaultPort(t *testing.T) {
	e := newEnv(t)
	for sec, want := range map[mailintakev1.Security]uint32{
		mailintakev1.Security_SECURITY_UNSPECIFIED: 993, mailintakev1.Security_SECURITY_TLS: 993,
		mailintakev1.Security_SECURITY_STARTTLS: 143, mailintakev1.Security_SECURITY_NONE: 143,
	} {
		mb := validMailbox("acme")
		mb.Port, mb.Security = 0, sec
		if got := e.create(e.admin, mb); got.GetPort() != want {
			t.Errorf("%s without a port: port %d, want %d", sec, got.GetPort(), want)
		}
	}
	mb := validMailbox("acme")
	mb.Port = 1993
	got := e.create(e.admin, mb)
	u, err := e.mailbox.UpdateMailbox(as(e.admin), &mailintakev1.UpdateMailboxRequest{
		Mailbox:    &mailintakev1.Mailbox{Id: got.GetId(), Security: mailintakev1.Security_SECURITY_STARTTLS},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"security", "port"}}})
	if err != nil || u.GetMailbox().GetPort() != 143 {
		t.Errorf("update to STARTTLS clearing the port: %v, %v", u.GetMailbox(), err)
	}
	// Security changed alone: the usual port follows it, a port of one's own stays.
	for _, c := range []struct {
		protocol   mailintakev1.Protocol
		from, want uint32
	}{{mailintakev1.Protocol_PROTOCOL_IMAP, 993, 143}, {mailintakev1.Protocol_PROTOCOL_IMAP, 1993, 1993}, {mailintakev1.Protocol_PROTOCOL_POP3, 995, 110}} {
		mb := validMailbox("acme")
		mb.Protocol, mb.Port = c.protocol, c.from
		got := e.create(e.admin, mb)
		u, err := e.mailbox.UpdateMailbox(as(e.admin), &mailintakev1.UpdateMailboxRequest{
			Mailbox:    &mailintakev1.Mailbox{Id: got.GetId(), Security: mailintakev1.Security_SECURITY_STARTTLS},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"security"}}})
		if err != nil || u.GetMailbox().GetPort() != c.want {
			t.Errorf("%s port %d, security changed to STARTTLS: port %d (%v), want %d", c.protocol, c.from, u.GetMailbox().GetPort(), err, c.want)
		}
	}
}

// A POP3 mailbox takes POP3's defaults: port 995 with TLS (110 otherwise), after_ack KEEP; its
// poll interval is kept.
func TestCreatePOP3Mailbox(t *testing.T) {
	e := newEnv(t)
	mb := validMailbox("acme")
	mb.Protocol, mb.Port, mb.PollInterval = mailintakev1.Protocol_PROTOCOL_POP3, 0, durationpb.New(5*time.Second)
	got := e.create(e.admin, mb)
	if got.GetPort() != 995 || got.GetAfterAck().GetAction() != mailintakev1.AfterAckAction_AFTER_ACK_ACTION_KEEP ||
		got.GetPollInterval().AsDuration() != 5*time.Second || got.GetProtocol() != mailintakev1.Protocol_PROTOCOL_POP3 {
		t.Errorf("POP3 defaults: %v", got)
	}
	mb = validMailbox("acme")
	mb.Protocol, mb.Port, mb.Security = mailintakev1.Protocol_PROTOCOL_POP3, 0, mailintakev1.Security_SECURITY_STARTTLS
	mb.AfterAck = &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE}
	got = e.create(e.admin, mb)
	if got.GetPort() != 110 || got.GetAfterAck().GetAction() != mailintakev1.AfterAckAction_AFTER_ACK_ACTION_DELETE {
		t.Errorf("POP3 with STLS: %v", got)
	}
	upd := func(paths []string, m *mailintakev1.Mailbox) (*mailintakev1.Mailbox, error) {
		m.Id = got.GetId()
		r, err := e.mailbox.UpdateMailbox(as(e.admin), &mailintakev1.UpdateMailboxRequest{Mailbox: m, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		return r.GetMailbox(), err
	}
	if u, err := upd([]string{"poll_interval"}, &mailintakev1.Mailbox{PollInterval: durationpb.New(time.Hour)}); err != nil || u.GetPollInterval().AsDuration() != time.Hour {
		t.Errorf("updating poll_interval = %v, %v", u, err)
	}
	_, err := upd([]string{"poll_interval"}, &mailintakev1.Mailbox{PollInterval: durationpb.New(time.Millisecond)})
	if wantCode(t, "poll_interval 1ms", err, codes.InvalidArgument); !slices.Contains(badFields(err), "mailbox.poll_interval") {
		t.Errorf("poll_interval 1ms: %v", err)
	}
	_, err = upd([]string{"protocol", "port", "after_ack"}, &mailintakev1.Mailbox{Protocol: mailintakev1.Protocol_PROTOCOL_IMAP, Port: 993,
		AfterAck: &mailintakev1.AfterAck{Action: mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MARK_SEEN}})
	if wantCode(t, "POP3 to IMAP", err, codes.InvalidArgument); !slices.Contains(badFields(err), "mailbox.protocol") {
		t.Errorf("changing the protocol: %v", err)
	}
}

func TestCreateGetUpdateDelete(t *testing.T) {
	e := newEnv(t)
	mb := e.create(e.admin, validMailbox("acme"))
	if mb.GetId() == "" || mb.GetFolder() != "INBOX" || mb.GetAfterAck().GetAction() != mailintakev1.AfterAckAction_AFTER_ACK_ACTION_MARK_SEEN ||
		mb.GetStartFrom() != mailintakev1.StartFrom_START_FROM_NEW || mb.GetCreateTime() == nil {
		t.Errorf("defaults not applied: %v", mb)
	}
	if len(mb.GetAuthSecrets()) != 0 || !slices.Equal(mb.GetAuthSecretsSet(), []string{"password"}) {
		t.Errorf("secrets in response: %v / %v", mb.GetAuthSecrets(), mb.GetAuthSecretsSet())
	}
	upd := func(paths []string, m *mailintakev1.Mailbox) (*mailintakev1.Mailbox, error) {
		m.Id = mb.GetId()
		r, err := e.mailbox.UpdateMailbox(as(e.admin), &mailintakev1.UpdateMailboxRequest{Mailbox: m, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		return r.GetMailbox(), err
	}
	got, err := upd([]string{"display_name", "enabled"}, &mailintakev1.Mailbox{DisplayName: "Renamed", Host: "ignored.example.com"})
	if err != nil || got.GetDisplayName() != "Renamed" || got.GetEnabled() || got.GetHost() != "imap.example.com" {
		t.Errorf("masked update = %v, %v", got, err)
	}
	_, err = upd([]string{"tenant"}, &mailintakev1.Mailbox{Tenant: "other"})
	wantCode(t, "update tenant", err, codes.InvalidArgument)
	_, err = upd(nil, &mailintakev1.Mailbox{})
	wantCode(t, "empty mask", err, codes.InvalidArgument)
	_, err = upd([]string{"port"}, &mailintakev1.Mailbox{Port: 70000})
	wantCode(t, "update to port 70000", err, codes.InvalidArgument)
	// Removing the password is refused by the provider.
	_, err = upd([]string{"auth_secrets"}, &mailintakev1.Mailbox{AuthSecrets: map[string]string{"password": ""}})
	if !slices.Contains(badFields(err), "mailbox.auth_secrets.password") {
		t.Errorf("removing the password: %v", err)
	}
	got, err = upd([]string{"auth_secrets", "auth_config"}, &mailintakev1.Mailbox{AuthSecrets: map[string]string{"password": "new-" + password}, AuthConfig: map[string]string{"mechanism": "LOGIN"}})
	if err != nil || got.GetAuthConfig()["mechanism"] != "LOGIN" {
		t.Errorf("secret update = %v, %v", got, err)
	}

	if _, err := e.mailbox.DeleteMailbox(as(e.admin), &mailintakev1.DeleteMailboxRequest{Id: mb.GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = e.mailbox.GetMailbox(as(e.admin), &mailintakev1.GetMailboxRequest{Id: mb.GetId()})
	wantCode(t, "get after delete", err, codes.NotFound)
	_, err = e.mailbox.GetMailbox(as(e.admin), &mailintakev1.GetMailboxRequest{})
	wantCode(t, "get without id", err, codes.InvalidArgument)
}

func TestPagination(t *testing.T) {
	e := newEnv(t)
	for range 5 {
		e.create(e.admin, validMailbox("acme"))
	}
	var ids []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := e.mailbox.ListMailboxes(as(e.admin), &mailintakev1.ListMailboxesRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range resp.GetMailboxes() {
			ids = append(ids, mb.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			if pages != 2 {
				t.Errorf("pages = %d, want 3", pages+1)
			}
			break
		}
	}
	if len(ids) != 5 || !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != 5 {
		t.Errorf("ids = %v", ids)
	}
	_, err := e.mailbox.ListMailboxes(as(e.admin), &mailintakev1.ListMailboxesRequest{PageSize: 5000})
	wantCode(t, "page size 5000", err, codes.InvalidArgument)
	_, err = e.mailbox.ListMailboxes(as(e.admin), &mailintakev1.ListMailboxesRequest{PageToken: "!!"})
	wantCode(t, "bad page token", err, codes.InvalidArgument)
}

// A provider that cannot be used is listed with its reason, and a request that needs it is
// answered FailedPrecondition (the server was reached; its provider failed), not Unavailable.
func TestBrokenProviderIsReportedAsSuch(t *testing.T) {
	pin := strings.Repeat("ab", 32)
	e := newEnv(t, func(o *pluginhost.Options) { o.Pins = map[string]string{"fake": pin} })
	resp, err := e.provs.ListAuthProviders(as(e.admin), &mailintakev1.ListAuthProvidersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var fake, basic *mailintakev1.AuthProvider
	for _, p := range resp.GetProviders() {
		switch p.GetName() {
		case "fake":
			fake = p
		case "basic":
			basic = p
		}
	}
	if basic == nil || basic.GetError() != "" || len(basic.GetFields()) == 0 {
		t.Errorf("basic = %v", basic)
	}
	if fake == nil || !strings.Contains(fake.GetError(), pin) || !strings.Contains(fake.GetError(), fake.GetSha256()) || len(fake.GetFields()) != 0 {
		t.Errorf("fake with a wrong pin = %v, want its error naming both hashes", fake)
	}
	mb := validMailbox("acme")
	mb.AuthProvider, mb.AuthSecrets = "fake", nil
	_, err = e.mailbox.CreateMailbox(as(e.admin), &mailintakev1.CreateMailboxRequest{Mailbox: mb})
	wantCode(t, "a mailbox of a provider with a wrong pin", err, codes.FailedPrecondition)
	if !strings.Contains(status.Convert(err).Message(), "pinned") {
		t.Errorf("message = %q", status.Convert(err).Message())
	}
}

func TestProviders(t *testing.T) {
	e := newEnv(t)
	tok := e.tenantToken("acme")
	resp, err := e.provs.ListAuthProviders(as(tok), &mailintakev1.ListAuthProvidersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var basic *mailintakev1.AuthProvider
	for _, p := range resp.GetProviders() {
		if p.GetName() == "basic" {
			basic = p
		}
	}
	if basic == nil || len(basic.GetFields()) != 2 || basic.GetPath() != "" {
		t.Fatalf("basic provider for a tenant = %v", basic)
	}
	admin, _ := e.provs.ListAuthProviders(as(e.admin), &mailintakev1.ListAuthProvidersRequest{})
	if admin.GetProviders()[0].GetSha256() == "" {
		t.Errorf("admin does not see the plugin's SHA-256")
	}

	mb := e.create(tok, validMailbox(""))
	ctx := as(tok)
	_, err = e.provs.BeginAuthorization(ctx, &mailintakev1.BeginAuthorizationRequest{MailboxId: mb.GetId()})
	wantCode(t, "BeginAuthorization of a basic mailbox", err, codes.FailedPrecondition)
}

// TestPasswordNeverLeaks creates, reads, lists, updates and fails with a known password, then
// scans every response, the logs at every level, and every file of the data directory.
func TestPasswordNeverLeaks(t *testing.T) {
	e := newEnv(t)
	tok := e.tenantToken("acme")
	mb := e.create(tok, validMailbox(""))
	e.mailbox.GetMailbox(as(tok), &mailintakev1.GetMailboxRequest{Id: mb.GetId()})
	e.mailbox.ListMailboxes(as(tok), &mailintakev1.ListMailboxesRequest{})
	e.mailbox.UpdateMailbox(as(tok), &mailintakev1.UpdateMailboxRequest{
		Mailbox:    &mailintakev1.Mailbox{Id: mb.GetId(), DisplayName: "x", AuthSecrets: map[string]string{"password": password + "\n"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name", "auth_secrets"}}})
	bad := validMailbox("")
	bad.Port = 0
	bad.AuthConfig = map[string]string{"mechanism": password}
	e.mailbox.CreateMailbox(as(tok), &mailintakev1.CreateMailboxRequest{Mailbox: bad})

	e.mu.Lock()
	for _, m := range e.seen {
		b, _ := protojson.Marshal(m)
		if strings.Contains(string(b), password) {
			t.Errorf("a response contains the password: %s", b)
		}
	}
	e.mu.Unlock()
	if strings.Contains(e.logs.String(), password) {
		t.Errorf("the logs contain the password")
	}
	if !strings.Contains(e.logs.String(), "mailbox created") {
		t.Errorf("the logs were not captured: %q", e.logs.String())
	}
	filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(path)
		if bytes.Contains(data, []byte(password)) {
			t.Errorf("%s contains the password in plain text", path)
		}
		return nil
	})
}

func TestInternalErrorsDoNotLeak(t *testing.T) {
	err := toStatus(context.WithValue(context.Background(), requestIDKey{}, "rid-1"), slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), "/x", fmt.Errorf("database is locked at /secret/path"))
	st := status.Convert(err)
	if st.Code() != codes.Internal || strings.Contains(st.Message(), "/secret/path") || !strings.Contains(st.Message(), "rid-1") {
		t.Errorf("internal error = %v", st)
	}
}

func TestStoreFailuresAreUnavailable(t *testing.T) {
	err := toStatus(context.Background(), slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), "/x",
		fmt.Errorf("recording acknowledgements: %w", fmt.Errorf("%w: the data directory's disk is full: free space on it", store.ErrUnavailable)))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "disk is full") || !strings.Contains(st.Message(), "retry") {
		t.Errorf("store failure = %v", st)
	}
}

func TestExpiringTokens(t *testing.T) {
	e := newEnv(t)
	resp, err := e.tokens.CreateToken(as(e.admin), &mailintakev1.CreateTokenRequest{Tenant: "acme", Name: "short", Ttl: durationpb.New(time.Hour)})
	if err != nil || resp.GetToken().GetExpireTime() == nil {
		t.Fatalf("CreateToken with a ttl: %v, %v", resp, err)
	}
	if _, err := e.mailbox.ListMailboxes(as(resp.GetSecret()), &mailintakev1.ListMailboxesRequest{}); err != nil {
		t.Fatalf("a fresh token: %v", err)
	}
	real := e.srv.now
	e.srv.now = func() time.Time { return real().Add(61 * time.Minute) }
	_, err = e.mailbox.ListMailboxes(as(resp.GetSecret()), &mailintakev1.ListMailboxesRequest{})
	wantCode(t, "an expired token", err, codes.Unauthenticated)
	if !strings.Contains(status.Convert(err).Message(), "expired") {
		t.Errorf("the refusal does not say the token expired: %v", err)
	}
	e.srv.now = real
	for _, ttl := range []*durationpb.Duration{durationpb.New(time.Second), durationpb.New(-time.Hour), durationpb.New(100 * 365 * 24 * time.Hour)} {
		_, err := e.tokens.CreateToken(as(e.admin), &mailintakev1.CreateTokenRequest{Tenant: "acme", Ttl: ttl})
		wantCode(t, "ttl "+ttl.AsDuration().String(), err, codes.InvalidArgument)
		if f := badFields(err); len(f) != 1 || f[0] != "ttl" {
			t.Errorf("ttl %s: fields %v", ttl.AsDuration(), f)
		}
	}
}
