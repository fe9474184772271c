package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/testutil"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

const (
	imapUser = "help@example.com"
	imapPass = "imap-pass-77"
)

func imapMailbox(srv *imaptest.Server, tenant string) *mailintakev1.Mailbox {
	return &mailintakev1.Mailbox{
		Tenant: tenant, DisplayName: "Help", Enabled: true, Host: srv.Host, Port: uint32(srv.Port),
		Security: mailintakev1.Security_SECURITY_NONE, Username: imapUser, AuthProvider: "basic",
		AuthSecrets: map[string]string{"password": imapPass}, StartFrom: mailintakev1.StartFrom_START_FROM_ALL,
	}
}

const withAttachment = "From: Customer <c@example.net>\r\nSubject: printer %d\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nIt broke.\r\n" +
	"--b\r\nContent-Type: application/octet-stream; name=log.bin\r\nContent-Disposition: attachment; filename=log.bin\r\n" +
	"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b--\r\n"

func TestStreamAckRawAndAttachmentOverGRPC(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, imapUser, imapPass)
	for i := 1; i <= 3; i++ {
		srv.Append(t, imapUser, "INBOX", []byte(fmt.Sprintf(withAttachment, i)))
	}
	acme := e.tenantToken("acme")
	globex := e.tenantToken("globex")
	mb := e.create(acme, imapMailbox(srv, ""))

	// Another tenant can neither stream this mailbox nor see its messages.
	gs, err := e.msgs.StreamMessages(as(globex), &mailintakev1.StreamMessagesRequest{MailboxIds: []string{mb.GetId()}})
	if err == nil {
		_, err = gs.Recv()
	}
	wantCode(t, "stream another tenant's mailbox", err, codes.NotFound)

	stream, err := e.msgs.StreamMessages(as(acme), &mailintakev1.StreamMessagesRequest{MaxInFlight: 10, AckDeadline: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var got []*mailintakev1.Message
	for len(got) < 3 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.GetMessage())
	}
	m := got[0]
	if len(m.GetAttachments()) != 1 || !bytes.Equal(m.GetAttachments()[0].GetData(), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("attachment = %v", m.GetAttachments())
	}

	// The raw message, in chunks, byte for byte; the attachment, decoded.
	raw, err := e.msgs.GetRawMessage(as(acme), &mailintakev1.GetRawMessageRequest{MessageId: m.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	var rawBytes []byte
	for {
		r, err := raw.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rawBytes = append(rawBytes, r.GetChunk()...)
	}
	if !strings.Contains(string(rawBytes), "Subject: printer") || uint64(len(rawBytes)) != m.GetRawSize() {
		t.Errorf("raw = %d bytes, want %d", len(rawBytes), m.GetRawSize())
	}
	att, err := e.msgs.GetAttachment(as(acme), &mailintakev1.GetAttachmentRequest{MessageId: m.GetId(), AttachmentId: m.GetAttachments()[0].GetId()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := att.Recv()
	if err != nil || first.GetAttachment().GetFilename() != "log.bin" || !bytes.Equal(first.GetChunk(), []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("GetAttachment = %v, %v", first, err)
	}
	// The last response carries the hash of the bytes sent: the one the delivered attachment
	// carries.
	last, err := att.Recv()
	if err != nil || last.GetSha256() == "" || last.GetSha256() != m.GetAttachments()[0].GetSha256() || last.GetSize() != 10 || len(last.GetChunk()) != 0 {
		t.Errorf("GetAttachment's last response = %v, %v; the attachment's hash is %q", last, err, m.GetAttachments()[0].GetSha256())
	}
	if _, err := att.Recv(); err != io.EOF {
		t.Errorf("after the last response: %v", err)
	}
	bad, err := e.msgs.GetAttachment(as(acme), &mailintakev1.GetAttachmentRequest{MessageId: m.GetId(), AttachmentId: "9"})
	if err == nil {
		_, err = bad.Recv()
	}
	wantCode(t, "missing attachment", err, codes.NotFound)
	r2, err := e.msgs.GetRawMessage(as(globex), &mailintakev1.GetRawMessageRequest{MessageId: m.GetId()})
	if err == nil {
		_, err = r2.Recv()
	}
	wantCode(t, "raw message of another tenant", err, codes.NotFound)
	gone, err := e.msgs.GetRawMessage(as(acme), &mailintakev1.GetRawMessageRequest{MessageId: fmt.Sprintf("%s:%d:999", mb.GetId(), m.GetUidValidity())})
	if err == nil {
		_, err = gone.Recv()
	}
	wantCode(t, "raw message no longer on the server", err, codes.NotFound)
	gone2, err := e.msgs.GetAttachment(as(acme), &mailintakev1.GetAttachmentRequest{MessageId: fmt.Sprintf("%s:%d:999", mb.GetId(), m.GetUidValidity()), AttachmentId: "2"})
	if err == nil {
		_, err = gone2.Recv()
	}
	wantCode(t, "attachment of a message no longer on the server", err, codes.NotFound)

	// Acks: another tenant's ack is unknown and changes nothing; the owner's counts.
	ids := []string{got[0].GetId(), got[1].GetId(), got[2].GetId()}
	res, err := e.msgs.AckMessages(as(globex), &mailintakev1.AckMessagesRequest{MessageIds: ids})
	if err != nil || len(res.GetAcknowledgedIds()) != 0 || len(res.GetUnknownIds()) != 3 {
		t.Errorf("foreign ack = %v, %v", res, err)
	}
	res, err = e.msgs.AckMessages(as(acme), &mailintakev1.AckMessagesRequest{MessageIds: append(ids, "nope", mb.GetId()+":1:999")})
	if err != nil || len(res.GetAcknowledgedIds()) != 3 || !slices.Equal(res.GetUnknownIds(), []string{"nope", mb.GetId() + ":1:999"}) {
		t.Errorf("ack = %v, %v", res, err)
	}
	_, err = e.msgs.AckMessages(as(acme), &mailintakev1.AckMessagesRequest{})
	wantCode(t, "empty ack", err, codes.InvalidArgument)
	eventually(t, "all seen", func() bool { _, u := srv.Status(t, imapUser, "INBOX"); return u == 0 })

	st, err := e.mailbox.GetMailboxStatus(as(acme), &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
	if err != nil || st.GetStatus().GetCounts().GetAcknowledged() != 3 {
		t.Errorf("status = %v, %v", st, err)
	}
	evs, err := e.mailbox.ListMailboxEvents(as(acme), &mailintakev1.ListMailboxEventsRequest{MailboxId: mb.GetId(), PageSize: 2})
	if err != nil || len(evs.GetEvents()) != 2 || evs.GetNextPageToken() == "" {
		t.Errorf("events = %v, %v", evs, err)
	}
	_, err = e.mailbox.ListMailboxEvents(as(globex), &mailintakev1.ListMailboxEventsRequest{MailboxId: mb.GetId()})
	wantCode(t, "events of another tenant", err, codes.NotFound)

	_, err = e.msgs.StreamMessages(as(acme), &mailintakev1.StreamMessagesRequest{MaxInFlight: 5000})
	if err == nil {
		s2, _ := e.msgs.StreamMessages(as(acme), &mailintakev1.StreamMessagesRequest{MaxInFlight: 5000})
		_, err = s2.Recv()
	}
	wantCode(t, "max_in_flight 5000", err, codes.InvalidArgument)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stepResults(resp *mailintakev1.TestConnectionResponse) map[mailintakev1.TestStepKind]*mailintakev1.TestStep {
	out := map[mailintakev1.TestStepKind]*mailintakev1.TestStep{}
	for _, s := range resp.GetSteps() {
		out[s.GetKind()] = s
	}
	return out
}

func TestConnectionTestNamesTheFailingStep(t *testing.T) {
	e := newEnv(t)
	plain := imaptest.Start(t, imaptest.Options{})
	plain.AddUser(t, imapUser, imapPass)
	ca := testutil.NewCA(t)
	cert := ca.Issue(t, "127.0.0.1", "localhost")
	tlsSrv := imaptest.Start(t, imaptest.Options{TLS: tlsConfig(cert)})
	tlsSrv.AddUser(t, imapUser, imapPass)

	ok := imapMailbox(plain, "acme")
	resp, err := e.mailbox.TestConnection(as(e.admin), &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: ok}})
	if err != nil || !resp.GetOk() || len(resp.GetSteps()) != 6 || !strings.Contains(stepResults(resp)[mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT].GetDetail(), "0 messages") {
		t.Fatalf("good test = %v, %v", resp, err)
	}
	// Testing creates nothing: the admin token needs no tenant for an inline definition, and a
	// preview neither.
	noTenant := imapMailbox(plain, "")
	if resp, err := e.mailbox.TestConnection(as(e.admin), &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: noTenant}}); err != nil || !resp.GetOk() {
		t.Errorf("test without a tenant (admin) = %v, %v", resp, err)
	}
	if _, err := e.mailbox.PreviewFirstSync(as(e.admin), &mailintakev1.PreviewFirstSyncRequest{Target: &mailintakev1.PreviewFirstSyncRequest_Mailbox{Mailbox: noTenant}}); err != nil {
		t.Errorf("preview without a tenant (admin) = %v", err)
	}
	cases := []struct {
		name string
		edit func(*mailintakev1.Mailbox)
		step mailintakev1.TestStepKind
		want string
	}{
		{"wrong password", func(m *mailintakev1.Mailbox) { m.AuthSecrets["password"] = "wrong" }, mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH, "refused"},
		{"wrong port", func(m *mailintakev1.Mailbox) { m.Port = 1 }, mailintakev1.TestStepKind_TEST_STEP_KIND_TCP, "refused"},
		{"missing folder", func(m *mailintakev1.Mailbox) { m.Folder = "Nope" }, mailintakev1.TestStepKind_TEST_STEP_KIND_SELECT, "Nope"},
		{"self-signed certificate", func(m *mailintakev1.Mailbox) {
			m.Port = uint32(tlsSrv.Port)
			m.Security = mailintakev1.Security_SECURITY_TLS
		}, mailintakev1.TestStepKind_TEST_STEP_KIND_TLS, "not signed by a trusted authority"},
	}
	for _, c := range cases {
		mb := imapMailbox(plain, "acme")
		c.edit(mb)
		resp, err := e.mailbox.TestConnection(as(e.admin), &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: mb}})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		step := stepResults(resp)[c.step]
		if resp.GetOk() || step.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED || !strings.Contains(step.GetError(), c.want) {
			t.Errorf("%s: step %v = %v; want FAILED with %q", c.name, c.step, step, c.want)
		}
		if c.step == mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH && step.GetAuthFailure().GetAction() == "" {
			t.Errorf("%s: no action for the admin", c.name)
		}
		for _, s := range resp.GetSteps() {
			if s.GetKind() > c.step && s.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED {
				t.Errorf("%s: step %v after the failure = %v", c.name, s.GetKind(), s.GetResult())
			}
		}
	}
	// With the CA given, the TLS server passes.
	mb := imapMailbox(tlsSrv, "acme")
	mb.Security = mailintakev1.Security_SECURITY_TLS
	mb.CaPem = string(ca.PEM)
	resp, err = e.mailbox.TestConnection(as(e.admin), &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: mb}})
	if err != nil || !resp.GetOk() {
		t.Errorf("TLS with the CA = %v, %v", resp, err)
	}
	// Preview: a dry run of the first sync.
	plain.Append(t, imapUser, "INBOX", []byte(fmt.Sprintf(withAttachment, 1)))
	plain.Append(t, imapUser, "INBOX", []byte(fmt.Sprintf(withAttachment, 2)))
	pmb := imapMailbox(plain, "acme")
	pmb.StartFrom = mailintakev1.StartFrom_START_FROM_UNSEEN
	prev, err := e.mailbox.PreviewFirstSync(as(e.admin), &mailintakev1.PreviewFirstSyncRequest{Target: &mailintakev1.PreviewFirstSyncRequest_Mailbox{Mailbox: pmb}})
	if err != nil || prev.GetWouldDeliver() != 2 || prev.GetFolderMessages() != 2 {
		t.Errorf("preview = %v, %v", prev, err)
	}
}

func tlsConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

func TestClientSubscribe(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, imapUser, imapPass)
	for i := 1; i <= 4; i++ {
		srv.Append(t, imapUser, "INBOX", []byte(fmt.Sprintf(withAttachment, i)))
	}
	acme := e.tenantToken("acme")
	e.create(acme, imapMailbox(srv, ""))
	cl := client.New(e.conn)
	ctx, cancel := context.WithCancel(as(acme))
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	failedOnce := false
	done := make(chan error, 1)
	go func() {
		done <- cl.Subscribe(ctx, &mailintakev1.StreamMessagesRequest{AckDeadline: durationpb.New(time.Second)}, func(_ context.Context, m *mailintakev1.Message) error {
			mu.Lock()
			defer mu.Unlock()
			seen[m.GetEnvelope().GetSubject()]++
			if m.GetEnvelope().GetSubject() == "printer 2" && !failedOnce {
				failedOnce = true
				return fmt.Errorf("the PSA was busy")
			}
			return nil
		})
	}()
	// Everything is acknowledged in the end (marked seen); the refused one came twice.
	eventually(t, "all acknowledged", func() bool { _, u := srv.Status(t, imapUser, "INBOX"); return u == 0 })
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Subscribe returned %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["printer 2"] != 2 || seen["printer 1"] != 1 || seen["printer 4"] != 1 {
		t.Errorf("deliveries = %v", seen)
	}
}

func TestDisableEnableTakesEffectAtOnce(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, imapUser, imapPass)
	mb := e.create(e.admin, imapMailbox(srv, "acme"))
	state := func() mailintakev1.MailboxState {
		st, err := e.mailbox.GetMailboxStatus(as(e.admin), &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		return st.GetStatus().GetState()
	}
	eventually(t, "idle", func() bool { return state() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE })
	set := func(on bool) {
		_, err := e.mailbox.UpdateMailbox(as(e.admin), &mailintakev1.UpdateMailboxRequest{
			Mailbox: &mailintakev1.Mailbox{Id: mb.GetId(), Enabled: on}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"enabled"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	set(false)
	if s := state(); s != mailintakev1.MailboxState_MAILBOX_STATE_DISABLED {
		t.Errorf("after disabling: %v", s)
	}
	logins := srv.Logins.Load()
	srv.Append(t, imapUser, "INBOX", []byte(fmt.Sprintf(withAttachment, 1)))
	time.Sleep(300 * time.Millisecond)
	if srv.Logins.Load() != logins {
		t.Errorf("a disabled mailbox logged in")
	}
	set(true)
	eventually(t, "idle again", func() bool { return state() == mailintakev1.MailboxState_MAILBOX_STATE_IDLE })
	if _, err := e.mailbox.DeleteMailbox(as(e.admin), &mailintakev1.DeleteMailboxRequest{Id: mb.GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err := e.mailbox.GetMailboxStatus(as(e.admin), &mailintakev1.GetMailboxStatusRequest{Id: mb.GetId()})
	wantCode(t, "status of a deleted mailbox", err, codes.NotFound)
}

// TestThirdPartyProviderDelivers uses the example provider (its own module) for a mailbox.
func TestThirdPartyProviderDelivers(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{ValidateToken: func(token, user string) bool { return token == "tok-3rd-party" && user == imapUser }})
	srv.AddUser(t, imapUser, imapPass)
	srv.Append(t, imapUser, "INBOX", []byte(fmt.Sprintf(withAttachment, 7)))
	mb := imapMailbox(srv, "acme")
	mb.AuthProvider = "statictoken"
	mb.AuthSecrets = map[string]string{"token": "tok-3rd-party"}
	e.create(e.admin, mb)
	next := e.stream(t, e.admin)
	if m := next(); m.GetEnvelope().GetSubject() != "printer 7" {
		t.Fatalf("got %q", m.GetEnvelope().GetSubject())
	}
	if srv.TokenLogins.Load() == 0 {
		t.Errorf("no token login")
	}
}

// TestOAuthBearerAndXOAuth2Refusals checks both token mechanisms against the in-process server,
// including the error exchanges (XOAUTH2's JSON challenge, OAUTHBEARER's %x01 reply).
func TestOAuthBearerAndXOAuth2Refusals(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{ValidateToken: func(token, user string) bool { return token == "good" && user == imapUser }})
	srv.AddUser(t, imapUser, imapPass)
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		for _, tok := range []string{"good", "bad"} {
			mb := imapMailbox(srv, "acme")
			mb.AuthProvider = "statictoken"
			mb.AuthConfig = map[string]string{"mechanism": mech}
			mb.AuthSecrets = map[string]string{"token": tok}
			resp, err := e.mailbox.TestConnection(as(e.admin), &mailintakev1.TestConnectionRequest{Target: &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: mb}})
			if err != nil {
				t.Fatal(err)
			}
			auth := stepResults(resp)[mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH]
			if tok == "good" && !resp.GetOk() {
				t.Errorf("%s with a good token: %v", mech, resp)
			}
			if tok == "bad" && (resp.GetOk() || !strings.Contains(auth.GetError(), "token rejected") ||
				auth.GetAuthFailure().GetReason() != mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_CONFIG_INVALID) {
				t.Errorf("%s with a bad token: auth step %v", mech, auth)
			}
		}
	}
}

// An attachment over the mailbox's inline limit is delivered with its exact size but neither
// its data nor its hash; GetAttachment streams the bytes and ends with their hash.
func TestOmittedAttachmentHashedOnDemand(t *testing.T) {
	e := newEnv(t)
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, imapUser, imapPass)
	data := make([]byte, 300_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var raw strings.Builder
	raw.WriteString("From: Customer <c@example.net>\r\nSubject: scan\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nSee the scan.\r\n--b\r\nContent-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for len(enc) > 76 {
		raw.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	raw.WriteString(enc + "\r\n--b--\r\n")
	srv.Append(t, imapUser, "INBOX", []byte(raw.String()))
	acme := e.tenantToken("acme")
	mb := imapMailbox(srv, "")
	mb.Limits = &mailintakev1.MailboxLimits{MaxInlineAttachmentBytes: 100_000}
	e.create(acme, mb)
	stream, err := e.msgs.StreamMessages(as(acme), &mailintakev1.StreamMessagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	m := resp.GetMessage()
	if len(m.GetAttachments()) != 1 {
		t.Fatalf("attachments: %v", m.GetAttachments())
	}
	a := m.GetAttachments()[0]
	if !a.GetDataOmitted() || a.GetData() != nil || a.GetSha256() != "" || a.GetSize() != uint64(len(data)) {
		t.Fatalf("delivered attachment: omitted %v, %d bytes of data, sha256 %q, size %d (want %d)", a.GetDataOmitted(), len(a.GetData()), a.GetSha256(), a.GetSize(), len(data))
	}
	att, err := e.msgs.GetAttachment(as(acme), &mailintakev1.GetAttachmentRequest{MessageId: m.GetId(), AttachmentId: a.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	var last *mailintakev1.GetAttachmentResponse
	for {
		r, err := att.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.GetChunk()...)
		last = r
	}
	sum := sha256.Sum256(data)
	if !bytes.Equal(got, data) || last.GetSha256() != hex.EncodeToString(sum[:]) || last.GetSize() != uint64(len(data)) {
		t.Errorf("GetAttachment: %d bytes (equal %v), last response sha256 %q size %d; want %x", len(got), bytes.Equal(got, data), last.GetSha256(), last.GetSize(), sum)
	}
}
