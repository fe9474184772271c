package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

const adminToken = "mit_admin"

// isAdmin reports whether the call carries the admin token, as the real server's interceptor
// would decide.
func isAdmin(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	auth := md.Get("authorization")
	return len(auth) == 1 && auth[0] == "Bearer "+adminToken
}

// fakeCluster answers GetClusterStatus with resp, and PermissionDenied to other tokens.
type fakeCluster struct {
	mailintakev1.UnimplementedClusterServiceServer
	resp *mailintakev1.GetClusterStatusResponse
}

func (f *fakeCluster) GetClusterStatus(ctx context.Context, _ *mailintakev1.GetClusterStatusRequest) (*mailintakev1.GetClusterStatusResponse, error) {
	if !isAdmin(ctx) {
		return nil, status.Error(codes.PermissionDenied, "the cluster status needs the admin token")
	}
	return f.resp, nil
}

// fakeMailboxes answers GetMailboxStatus with status for its mailbox id.
type fakeMailboxes struct {
	mailintakev1.UnimplementedMailboxServiceServer
	status *mailintakev1.MailboxStatus
}

func (f *fakeMailboxes) GetMailboxStatus(_ context.Context, req *mailintakev1.GetMailboxStatusRequest) (*mailintakev1.GetMailboxStatusResponse, error) {
	if req.GetId() != f.status.GetMailboxId() {
		return nil, status.Errorf(codes.NotFound, "mailbox %s not found", req.GetId())
	}
	return &mailintakev1.GetMailboxStatusResponse{Status: f.status}, nil
}

// serve starts a gRPC server on a loopback port with the given fakes (nil: not registered) and
// returns its address.
func serve(t *testing.T, cs mailintakev1.ClusterServiceServer, ms mailintakev1.MailboxServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	if cs != nil {
		mailintakev1.RegisterClusterServiceServer(g, cs)
	}
	if ms != nil {
		mailintakev1.RegisterMailboxServiceServer(g, ms)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// runCLI runs the CLI in-process against addr with token and returns its exit code and output.
func runCLI(t *testing.T, addr, token string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"--addr", addr, "--token", token, "--rpc-timeout", "10s"}, args...)
	code := run(ctx, full, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func clusteredResponse(now time.Time) *mailintakev1.GetClusterStatusResponse {
	return &mailintakev1.GetClusterStatusResponse{
		ReplicaId: "r2",
		Clustered: true,
		Replicas: []*mailintakev1.ReplicaStatus{
			{Id: "r1", Addr: "10.0.0.1:7466", Alive: true, Incarnation: "inc-1", StartTime: timestamppb.New(now.Add(-time.Hour)),
				ExpireTime: timestamppb.New(now.Add(20 * time.Second)), Mailboxes: 12, MaxEpoch: 7},
			{Id: "r2", Addr: "10.0.0.2:7466", Alive: true, Incarnation: "inc-2", StartTime: timestamppb.New(now.Add(-30 * time.Minute)),
				ExpireTime: timestamppb.New(now.Add(25 * time.Second)), Mailboxes: 11, MaxEpoch: 9, Self: true},
			{Id: "r3", Addr: "10.0.0.3:7466", Alive: false, Incarnation: "inc-3", StartTime: timestamppb.New(now.Add(-2 * time.Hour)),
				ExpireTime: timestamppb.New(now.Add(-40 * time.Second)), Mailboxes: 0, MaxEpoch: 4},
		},
		UnownedMailboxes:  3,
		LastReconcileTime: timestamppb.New(now.Add(-2 * time.Second)),
		LastError:         "listing the leases: connection reset by peer",
	}
}

// row returns the table row of replica id, split into fields, with the "*" mark as a field of
// its own.
func row(t *testing.T, out, id string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "*" {
			f = f[1:]
		}
		if len(f) > 0 && f[0] == id {
			return strings.Fields(l)
		}
	}
	t.Fatalf("no row for replica %s in:\n%s", id, out)
	return nil
}

func TestClusterStatusClustered(t *testing.T) {
	now := time.Now()
	resp := clusteredResponse(now)
	addr := serve(t, &fakeCluster{resp: resp}, nil)
	code, out, errOut := runCLI(t, addr, adminToken, "cluster", "status")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	t.Logf("output:\n%s", out)

	header := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ADDR") {
			header = l
		}
	}
	for _, col := range []string{"ID", "ADDR", "ALIVE", "MAILBOXES", "MAX EPOCH", "STARTED", "HEARTBEAT EXPIRES"} {
		if !strings.Contains(header, col) {
			t.Errorf("header %q lacks %s", header, col)
		}
	}
	if !strings.Contains(out, "3 replicas (2 alive), answered by replica r2") {
		t.Errorf("no summary line in:\n%s", out)
	}

	// ID ADDR ALIVE MAILBOXES MAX-EPOCH STARTED(date time) EXPIRES(date time (in|ago ...)).
	r1 := row(t, out, "r1")
	if r1[0] == "*" || r1[1] != "10.0.0.1:7466" || r1[2] != "yes" || r1[3] != "12" || r1[4] != "7" {
		t.Errorf("r1 row: %q", r1)
	}
	r2 := row(t, out, "r2")
	if r2[0] != "*" || r2[1] != "r2" || r2[3] != "yes" || r2[4] != "11" || r2[5] != "9" {
		t.Errorf("r2 row (the answering replica, marked): %q", r2)
	}
	r3 := row(t, out, "r3")
	if r3[0] == "*" || r3[2] != "no" || r3[3] != "0" || r3[4] != "4" {
		t.Errorf("r3 row (not alive): %q", r3)
	}
	started := resp.Replicas[2].StartTime.AsTime().Local().Format("2006-01-02 15:04:05")
	expires := resp.Replicas[2].ExpireTime.AsTime().Local().Format("2006-01-02 15:04:05")
	if l := strings.Join(r3, " "); !strings.Contains(l, started) || !strings.Contains(l, expires) || !strings.Contains(l, " ago)") {
		t.Errorf("r3 row lacks start %s, lapsed heartbeat %s ... ago: %q", started, expires, l)
	}
	if l := strings.Join(r1, " "); !strings.Contains(l, "(in ") {
		t.Errorf("r1 row: a live heartbeat expires in the future: %q", l)
	}
	for _, want := range []string{"this replica", "unowned mailboxes: 3", "last error:        listing the leases: connection reset by peer", "last reconciled:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestClusterStatusHealthyOmitsUnownedAndError(t *testing.T) {
	resp := clusteredResponse(time.Now())
	resp.UnownedMailboxes, resp.LastError = 0, ""
	addr := serve(t, &fakeCluster{resp: resp}, nil)
	code, out, _ := runCLI(t, addr, adminToken, "cluster", "status")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(out, "unowned") || strings.Contains(out, "last error") {
		t.Errorf("a healthy cluster shows no unowned or error lines:\n%s", out)
	}
}

func TestClusterStatusNotClustered(t *testing.T) {
	addr := serve(t, &fakeCluster{resp: &mailintakev1.GetClusterStatusResponse{Clustered: false}}, nil)
	code, out, errOut := runCLI(t, addr, adminToken, "cluster", "status")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if out != notClustered+"\n" {
		t.Errorf("output %q, want %q", out, notClustered+"\n")
	}
}

func TestClusterStatusJSON(t *testing.T) {
	resp := clusteredResponse(time.Now())
	addr := serve(t, &fakeCluster{resp: resp}, nil)
	// --json before the command and after it.
	for _, args := range [][]string{{"--json", "cluster", "status"}, {"cluster", "status", "--json"}} {
		code, out, errOut := runCLI(t, addr, adminToken, args...)
		if code != exitOK || errOut != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
		got := &mailintakev1.GetClusterStatusResponse{}
		if err := protojson.Unmarshal([]byte(out), got); err != nil {
			t.Fatalf("%v: output is not the response as protobuf JSON: %v\n%s", args, err, out)
		}
		if !proto.Equal(got, resp) {
			t.Errorf("%v: JSON round trip differs:\n%s", args, out)
		}
		// The JSON names of the fields (protojson's spacing varies from run to run: decode it).
		var fields map[string]any
		if err := json.Unmarshal([]byte(out), &fields); err != nil {
			t.Fatal(err)
		}
		if fields["replicaId"] != "r2" || fields["unownedMailboxes"] != float64(3) {
			t.Errorf("%v: unexpected field names:\n%s", args, out)
		}
	}
	// Not clustered: the JSON says so (protojson leaves out the false field, as elsewhere).
	addr = serve(t, &fakeCluster{resp: &mailintakev1.GetClusterStatusResponse{}}, nil)
	code, out, _ := runCLI(t, addr, adminToken, "cluster", "status", "--json")
	if code != exitOK || strings.TrimSpace(out) != "{}" {
		t.Errorf("not clustered --json: exit %d, output %q", code, out)
	}
}

func TestClusterStatusPermissionDenied(t *testing.T) {
	addr := serve(t, &fakeCluster{resp: clusteredResponse(time.Now())}, nil)
	code, out, errOut := runCLI(t, addr, "mit_tenant", "cluster", "status")
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
	if want := "mailintake: permission denied: the cluster status needs the admin token\n"; errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
}

func TestClusterStatusOlderServer(t *testing.T) {
	// A server without ClusterService.
	addr := serve(t, nil, &fakeMailboxes{status: &mailintakev1.MailboxStatus{MailboxId: "mb1"}})
	code, _, errOut := runCLI(t, addr, adminToken, "cluster", "status")
	if code != exitFailed || !strings.Contains(errOut, "not supported by this server") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestClusterUsage(t *testing.T) {
	for _, args := range [][]string{{"cluster"}, {"cluster", "--json"}, {"cluster", "frob"}, {"cluster", "status", "extra"}} {
		code, _, errOut := runCLI(t, "127.0.0.1:1", adminToken, args...)
		if code != exitUsage || !strings.Contains(errOut, "cluster") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	code, out, _ := runCLI(t, "127.0.0.1:1", adminToken, "help")
	if code != exitOK || !strings.Contains(out, "cluster status") {
		t.Errorf("help: exit %d, lacks cluster status:\n%s", code, out)
	}
}

func TestMailboxStatusOwner(t *testing.T) {
	st := &mailintakev1.MailboxStatus{MailboxId: "mb1", State: mailintakev1.MailboxState_MAILBOX_STATE_IDLE,
		OwnerReplicaId: "r2", OwnerEpoch: 7}
	addr := serve(t, nil, &fakeMailboxes{status: st})
	code, out, errOut := runCLI(t, addr, adminToken, "mailbox", "status", "mb1")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if !strings.Contains(out, "owner:         replica r2 (lease epoch 7)\n") {
		t.Errorf("no owner line:\n%s", out)
	}

	code, out, _ = runCLI(t, addr, adminToken, "mailbox", "status", "mb1", "--json")
	if code != exitOK {
		t.Fatalf("--json: exit %d", code)
	}
	got := &mailintakev1.MailboxStatus{}
	if err := protojson.Unmarshal([]byte(out), got); err != nil {
		t.Fatal(err)
	}
	if got.GetOwnerReplicaId() != "r2" || got.GetOwnerEpoch() != 7 {
		t.Errorf("--json lacks the owner:\n%s", out)
	}
}

func TestMailboxStatusNoOwner(t *testing.T) {
	// A single server, or a mailbox no replica holds yet: no owner line.
	addr := serve(t, nil, &fakeMailboxes{status: &mailintakev1.MailboxStatus{MailboxId: "mb1", State: mailintakev1.MailboxState_MAILBOX_STATE_IDLE}})
	code, out, _ := runCLI(t, addr, adminToken, "mailbox", "status", "mb1")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(out, "owner") {
		t.Errorf("owner line without an owner:\n%s", out)
	}
}
