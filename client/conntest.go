package client

import (
	"context"
	"errors"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// StepName is a connection test step's short name, as the CLI prints it and the web page's
// data-step carries it: "dns", "smtp-auth".
func StepName(k mailintakev1.TestStepKind) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k.String(), "TEST_STEP_KIND_")), "_", "-")
}

// TestConnection runs a connection test of a saved mailbox or of a definition (req's target) as
// it runs: onEvent, when set, gets every event of StreamConnectionTest in order (the plan, each
// step as it starts and as it ends) before the summary is returned. A server without
// StreamConnectionTest (Unimplemented before any event) is asked TestConnection instead, and
// onEvent gets its steps, all ended, at the end.
func TestConnection(ctx context.Context, c mailintakev1.MailboxServiceClient, req *mailintakev1.StreamConnectionTestRequest,
	onEvent func(*mailintakev1.StreamConnectionTestResponse)) (*mailintakev1.TestConnectionResponse, error) {
	if onEvent == nil {
		onEvent = func(*mailintakev1.StreamConnectionTestResponse) {}
	}
	stream, err := c.StreamConnectionTest(ctx, req)
	received := false
	for err == nil {
		var r *mailintakev1.StreamConnectionTestResponse
		if r, err = stream.Recv(); err != nil {
			break
		}
		received = true
		if sum := r.GetSummary(); sum != nil {
			return sum, nil
		}
		onEvent(r)
	}
	switch {
	case status.Code(err) == codes.Unimplemented && !received:
		one := &mailintakev1.TestConnectionRequest{}
		switch t := req.GetTarget().(type) {
		case *mailintakev1.StreamConnectionTestRequest_Id:
			one.Target = &mailintakev1.TestConnectionRequest_Id{Id: t.Id}
		case *mailintakev1.StreamConnectionTestRequest_Mailbox:
			one.Target = &mailintakev1.TestConnectionRequest_Mailbox{Mailbox: t.Mailbox}
		}
		resp, err := c.TestConnection(ctx, one)
		if err != nil {
			return nil, err
		}
		for _, s := range resp.GetSteps() {
			onEvent(&mailintakev1.StreamConnectionTestResponse{Event: &mailintakev1.StreamConnectionTestResponse_Step{Step: s}})
		}
		return resp, nil
	case errors.Is(err, io.EOF):
		return nil, errors.New("the server ended the connection test without its result")
	}
	return nil, err
}
