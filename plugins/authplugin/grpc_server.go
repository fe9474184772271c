package authplugin

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/plugins/authplugin/authpluginv1"
)

// grpcServer adapts a Provider to the authplugin.v1 service (plugin side).
type grpcServer struct {
	authpluginv1.UnimplementedProviderServiceServer
	impl Provider
}

func (s *grpcServer) Describe(ctx context.Context, _ *authpluginv1.DescribeRequest) (*authpluginv1.DescribeResponse, error) {
	d, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, errorToStatus(err)
	}
	resp := descriptionToProto(d)
	_, resp.Interactive = s.impl.(Authorizer)
	return resp, nil
}

func (s *grpcServer) ValidateConfig(ctx context.Context, req *authpluginv1.ValidateConfigRequest) (*authpluginv1.ValidateConfigResponse, error) {
	err := s.impl.ValidateConfig(ctx, accountFromProto(req.GetAccount()))
	var verr *ValidationError
	switch {
	case err == nil:
		return &authpluginv1.ValidateConfigResponse{}, nil
	case errors.As(err, &verr):
		resp := &authpluginv1.ValidateConfigResponse{}
		for _, v := range verr.Violations {
			resp.Violations = append(resp.Violations, &authpluginv1.FieldViolation{Field: v.Field, Description: v.Description})
		}
		return resp, nil
	default:
		return nil, errorToStatus(err)
	}
}

func (s *grpcServer) IssueCredential(ctx context.Context, req *authpluginv1.IssueCredentialRequest) (*authpluginv1.IssueCredentialResponse, error) {
	res, err := s.impl.IssueCredential(ctx, Request{
		Account:      accountFromProto(req.GetAccount()),
		State:        req.GetState(),
		ForceRefresh: req.GetForceRefresh(),
	})
	if err != nil {
		return nil, errorToStatus(err)
	}
	resp := &authpluginv1.IssueCredentialResponse{
		Credential:   credentialToProto(res.Credential),
		State:        res.State,
		StateChanged: res.StateChanged,
	}
	if h := res.Health; h != nil {
		resp.Health = &authpluginv1.TokenHealth{RefreshTokenIssueTime: timeToProto(h.RefreshTokenIssued), Warnings: h.Warnings}
	}
	return resp, nil
}

func (s *grpcServer) BeginAuthorization(ctx context.Context, req *authpluginv1.BeginAuthorizationRequest) (*authpluginv1.BeginAuthorizationResponse, error) {
	a, ok := s.impl.(Authorizer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, ErrNotInteractive.Error())
	}
	res, err := a.BeginAuthorization(ctx, Request{Account: accountFromProto(req.GetAccount()), State: req.GetState()})
	if err != nil {
		return nil, errorToStatus(err)
	}
	return authorizationToProto(res), nil
}

func (s *grpcServer) PollAuthorization(ctx context.Context, req *authpluginv1.PollAuthorizationRequest) (*authpluginv1.PollAuthorizationResponse, error) {
	a, ok := s.impl.(Authorizer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, ErrNotInteractive.Error())
	}
	res, err := a.PollAuthorization(ctx, Request{Account: accountFromProto(req.GetAccount()), State: req.GetState()}, req.GetHandle())
	if err != nil {
		return nil, errorToStatus(err)
	}
	return pollResultToProto(res), nil
}

// errorToStatus turns a provider error into a gRPC status. An *Error travels as an
// authplugin.v1.Error detail; anything else becomes Internal with its text.
func errorToStatus(err error) error {
	if e, ok := AsError(err); ok {
		code := codes.FailedPrecondition
		if e.Reason == ReasonTemporary {
			code = codes.Unavailable
		}
		st, derr := status.New(code, e.Error()).WithDetails(errorToProto(e))
		if derr != nil {
			return status.Error(code, e.Error())
		}
		return st.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

var _ authpluginv1.ProviderServiceServer = (*grpcServer)(nil)
