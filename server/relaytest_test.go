package server

import (
	"context"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	replicav1 "github.com/mailintake/mailintake/proto/mailintake/replica/v1"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// ownerStub is a mailbox's owner as relayTest sees it: it streams events, or fails after some.
type ownerStub struct {
	replicav1.ReplicaServiceClient
	events []*mailintakev1.StreamConnectionTestResponse
	end    error // after the events; nil: io.EOF
	got    *replicav1.StreamConnectionTestRequest
}

func (o *ownerStub) StreamConnectionTest(_ context.Context, req *replicav1.StreamConnectionTestRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[replicav1.StreamConnectionTestResponse], error) {
	o.got = req
	return &stubStream{o: o}, nil
}

type stubStream struct {
	grpc.ClientStream
	o *ownerStub
	i int
}

func (s *stubStream) Recv() (*replicav1.StreamConnectionTestResponse, error) {
	if s.i < len(s.o.events) {
		s.i++
		return &replicav1.StreamConnectionTestResponse{Response: s.o.events[s.i-1]}, nil
	}
	if s.o.end != nil {
		return nil, s.o.end
	}
	return nil, io.EOF
}

// relayTest passes the owner's events on one by one with the caller's scope; an owner of an
// earlier release (UNIMPLEMENTED before any event) is not relayed, so the edge falls back to
// TestConnection; a failure after some events is the caller's, not a reason to test again.
func TestRelayTest(t *testing.T) {
	ctx := context.WithValue(context.Background(), principalKey{}, Principal{Tenant: "acme"})
	req := &mailintakev1.StreamConnectionTestRequest{Target: &mailintakev1.StreamConnectionTestRequest_Id{Id: "mb1"}}
	running := &mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Step{Step: &mailintakev1.TestStep{
		Kind: mailintakev1.TestStepKind_TEST_STEP_KIND_DNS, Result: mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING}}}
	summary := &mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Summary{Summary: &mailintakev1.TestConnectionResponse{Ok: true}}}

	owner := &ownerStub{events: []*mailintakev1.StreamConnectionTestResponse{running, summary}}
	var got []*mailintakev1.StreamConnectionTestResponse
	relayed, err := relayTest(ctx, owner, req, func(r *mailintakev1.StreamConnectionTestResponse) error { got = append(got, r); return nil })
	if !relayed || err != nil || len(got) != 2 || got[0].GetStep().GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING || !got[1].GetSummary().GetOk() {
		t.Errorf("streamed: relayed %v, %v, %v", relayed, err, got)
	}
	if owner.got.GetScope().GetTenant() != "acme" || owner.got.GetScope().GetAdmin() || owner.got.GetRequest().GetId() != "mb1" {
		t.Errorf("the owner was asked %v", owner.got)
	}

	old := &ownerStub{end: status.Error(codes.Unimplemented, "unknown method StreamConnectionTest")}
	got = nil
	if relayed, err := relayTest(ctx, old, req, func(r *mailintakev1.StreamConnectionTestResponse) error { got = append(got, r); return nil }); relayed || len(got) != 0 {
		t.Errorf("an owner without the call: relayed %v, %v, %d events", relayed, err, len(got))
	}

	broken := &ownerStub{events: []*mailintakev1.StreamConnectionTestResponse{running}, end: status.Error(codes.Unimplemented, "odd")}
	if relayed, err := relayTest(ctx, broken, req, func(*mailintakev1.StreamConnectionTestResponse) error { return nil }); !relayed || err == nil {
		t.Errorf("failing after an event: relayed %v, %v", relayed, err)
	}
}
