package server

import (
	"context"
	"regexp"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/internal/store"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// tokenService implements TokenService (admin token only).
type tokenService struct {
	mailintakev1.UnimplementedTokenServiceServer
	s *Server
}

var tenantPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func tokenToProto(t *store.Token) *mailintakev1.ApiToken {
	p := &mailintakev1.ApiToken{Id: t.ID, Name: t.Name, Tenant: t.Tenant, Admin: t.Admin, CreateTime: timestamppb.New(t.CreateTime)}
	if !t.RevokeTime.IsZero() {
		p.RevokeTime = timestamppb.New(t.RevokeTime)
	}
	if !t.ExpireTime.IsZero() {
		p.ExpireTime = timestamppb.New(t.ExpireTime)
	}
	return p
}

func (ts *tokenService) CreateToken(ctx context.Context, req *mailintakev1.CreateTokenRequest) (*mailintakev1.CreateTokenResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	var v violations
	if !tenantPattern.MatchString(req.GetTenant()) {
		v.add("tenant", "is required: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if len(req.GetName()) > 200 {
		v.add("name", "must be at most 200 characters")
	}
	var ttl time.Duration
	if req.Ttl != nil {
		ttl = req.GetTtl().AsDuration()
		if err := req.GetTtl().CheckValid(); err != nil || ttl < time.Minute || ttl > 10*365*24*time.Hour {
			v.add("ttl", "must be between 1 minute and 10 years (or unset for a token valid until revoked)")
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	t, value, err := NewToken(ctx, ts.s.store, req.GetName(), req.GetTenant(), false, ts.s.now(), ttl)
	if err != nil {
		return nil, err
	}
	ts.s.log.InfoContext(ctx, "API token created", "token_id", t.ID, "tenant", t.Tenant, "by", caller(ctx).TokenID)
	return &mailintakev1.CreateTokenResponse{Token: tokenToProto(t), Secret: value}, nil
}

func (ts *tokenService) ListTokens(ctx context.Context, req *mailintakev1.ListTokensRequest) (*mailintakev1.ListTokensResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	toks, err := ts.s.store.ListTokens(ctx, req.GetIncludeRevoked())
	if err != nil {
		return nil, err
	}
	resp := &mailintakev1.ListTokensResponse{}
	for _, t := range toks {
		resp.Tokens = append(resp.Tokens, tokenToProto(t))
	}
	return resp, nil
}

func (ts *tokenService) RevokeToken(ctx context.Context, req *mailintakev1.RevokeTokenRequest) (*mailintakev1.RevokeTokenResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, violations{{Field: "id", Description: "is required"}}.err()
	}
	if req.GetId() == caller(ctx).TokenID {
		return nil, violations{{Field: "id", Description: "is the token of this call; revoke the admin token by deleting admin.token and restarting"}}.err()
	}
	if err := ts.s.store.RevokeToken(ctx, req.GetId(), ts.s.now()); err != nil {
		if err == store.ErrNotFound {
			return nil, notFound("token", req.GetId())
		}
		return nil, err
	}
	ts.s.log.InfoContext(ctx, "API token revoked", "token_id", req.GetId(), "by", caller(ctx).TokenID)
	return &mailintakev1.RevokeTokenResponse{}, nil
}
