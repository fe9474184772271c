package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// testSteps is a test whose auth step fails.
var testSteps = []*mailintakev1.TestStep{
	{Kind: mailintakev1.TestStepKind_TEST_STEP_KIND_DNS, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_OK, Detail: "127.0.0.1", Duration: durationpb.New(time.Millisecond)},
	{Kind: mailintakev1.TestStepKind_TEST_STEP_KIND_TCP, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_OK, Detail: "127.0.0.1:993"},
	{Kind: mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED, Error: "the server refused the login",
		AuthFailure: &mailintakev1.AuthFailure{Action: "Check the password."}},
	{Kind: mailintakev1.TestStepKind_TEST_STEP_KIND_SMTP_AUTH, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_SKIPPED},
}

// fakeTests answers connection tests with testSteps by TestConnection only, as an older server.
type fakeTests struct {
	mailintakev1.UnimplementedMailboxServiceServer
}

func (f *fakeTests) TestConnection(context.Context, *mailintakev1.TestConnectionRequest) (*mailintakev1.TestConnectionResponse, error) {
	return &mailintakev1.TestConnectionResponse{Steps: testSteps}, nil
}

// streamingTests streams testSteps, going on after the second only once the CLI's output (out)
// shows it: a CLI that printed at the end would get an empty summary.
type streamingTests struct {
	fakeTests
	out *syncWriter
}

func (f *streamingTests) StreamConnectionTest(req *mailintakev1.StreamConnectionTestRequest, stream grpc.ServerStreamingServer[mailintakev1.StreamConnectionTestResponse]) error {
	plan := &mailintakev1.TestPlan{}
	for _, s := range testSteps {
		plan.Steps = append(plan.Steps, s.GetKind())
	}
	stream.Send(&mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Plan{Plan: plan}})
	for i, s := range testSteps {
		stream.Send(&mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Step{Step: &mailintakev1.TestStep{Kind: s.GetKind(), Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING}}})
		stream.Send(&mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Step{Step: s}})
		if i == 1 && f.out != nil {
			// The CLI printed the first two steps before the test goes on.
			if !f.out.waitFor("tcp", 5*time.Second) {
				return stream.Send(&mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Summary{Summary: &mailintakev1.TestConnectionResponse{}}})
			}
		}
	}
	return stream.Send(&mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Summary{Summary: &mailintakev1.TestConnectionResponse{Steps: testSteps}}})
}

// syncWriter is a stdout a test can wait on.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *syncWriter) waitFor(s string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if strings.Contains(w.String(), s) {
			return true
		}
	}
	return false
}

func serveMailboxes(t *testing.T, srv mailintakev1.MailboxServiceServer) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	mailintakev1.RegisterMailboxServiceServer(g, srv)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

func TestMailboxTestPrintsStepsAsTheyCome(t *testing.T) {
	want := "[ok]   dns               1ms  127.0.0.1\n" +
		"[ok]   tcp               0ms  127.0.0.1:993\n" +
		"[FAIL] auth              0ms\n" +
		"       the server refused the login\n" +
		"       what to do: Check the password.\n" +
		"[skip] smtp-auth         0ms\n"
	streaming := &streamingTests{}
	streaming.out = &syncWriter{}
	for _, c := range []struct {
		name string
		srv  mailintakev1.MailboxServiceServer
		out  *syncWriter
	}{
		{"streamed", streaming, streaming.out},
		{"an older server (TestConnection)", &fakeTests{}, &syncWriter{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := serveMailboxes(t, c.srv)
			full := []string{"--addr", addr, "--token", adminToken, "--rpc-timeout", "10s", "mailbox", "test", "mb-1"}
			var stderr strings.Builder
			code := run(context.Background(), full, strings.NewReader(""), c.out, &stderr)
			if code != 1 || c.out.String() != want {
				t.Errorf("exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", code, c.out, want, stderr.String())
			}
			// --json prints the whole result, as before.
			var js syncWriter
			code = run(context.Background(), append(full[:len(full)-3:len(full)-3], "--json", "mailbox", "test", "mb-1"), strings.NewReader(""), &js, &stderr)
			var got struct {
				Steps []struct {
					Kind   string `json:"kind"`
					Result string `json:"result"`
				} `json:"steps"`
			}
			if err := json.Unmarshal([]byte(js.String()), &got); code != 1 || err != nil || len(got.Steps) != 4 || got.Steps[2].Result != "TEST_STEP_RESULT_FAILED" {
				t.Errorf("--json: exit %d, %v, %s", code, err, js.String())
			}
		})
	}
}
