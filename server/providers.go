package server

import (
	"context"
	"errors"

	"github.com/mailintake/mailintake/internal/pluginhost"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// authProviderService implements AuthProviderService.
type authProviderService struct {
	mailintakev1.UnimplementedAuthProviderServiceServer
	s *Server
}

var protocolByName = map[string]mailintakev1.Protocol{
	"imap": mailintakev1.Protocol_PROTOCOL_IMAP,
	"pop3": mailintakev1.Protocol_PROTOCOL_POP3,
}

func providerToProto(info pluginhost.Info, admin bool) *mailintakev1.AuthProvider {
	p := &mailintakev1.AuthProvider{
		Name: info.Name, Version: info.Version, DisplayName: info.DisplayName, Description: info.Description.Description,
		SaslMechanisms: info.SASLMechanisms, Interactive: info.Interactive,
	}
	if admin {
		p.Path, p.Sha256 = info.Path, info.SHA256
	}
	if info.Err != nil {
		p.Error = providerFailure(info.Err)
		return p
	}
	for _, name := range info.Protocols {
		if v, ok := protocolByName[name]; ok {
			p.Protocols = append(p.Protocols, v)
		}
	}
	for _, f := range info.Fields {
		p.Fields = append(p.Fields, &mailintakev1.ConfigField{
			Name: f.Name, Label: f.Label, Help: f.Help, Type: mailintakev1.ConfigFieldType(f.Type),
			Required: f.Required, Secret: f.Secret, Options: f.Options, DefaultValue: f.Default,
		})
	}
	return p
}

// ListAuthProviders describes every installed provider. A provider that cannot be used is
// listed with its error instead of failing the whole list.
func (a *authProviderService) ListAuthProviders(ctx context.Context, _ *mailintakev1.ListAuthProvidersRequest) (*mailintakev1.ListAuthProvidersResponse, error) {
	infos, err := a.s.plugins.Providers(ctx)
	if err != nil {
		return nil, err
	}
	resp := &mailintakev1.ListAuthProvidersResponse{}
	for _, info := range infos {
		resp.Providers = append(resp.Providers, providerToProto(info, caller(ctx).Admin))
	}
	return resp, nil
}

// providerFailure says in words why a provider cannot be used and what to do.
func providerFailure(err error) string {
	switch {
	case errors.Is(err, pluginhost.ErrPinMismatch):
		return err.Error()
	default:
		return err.Error() + "; run the executable by hand to see its output, or check the server's log for the provider's messages"
	}
}

func (a *authProviderService) BeginAuthorization(ctx context.Context, req *mailintakev1.BeginAuthorizationRequest) (*mailintakev1.BeginAuthorizationResponse, error) {
	mb, err := (&mailboxService{s: a.s}).load(ctx, "mailbox_id", req.GetMailboxId())
	if err != nil {
		return nil, err
	}
	auth, err := a.s.sessions.BeginAuthorization(ctx, mb)
	if err != nil {
		return nil, err
	}
	a.s.addEvent(ctx, mb.Spec.Id, "auth", "interactive sign-in started: "+auth.GetMessage())
	a.s.wake(ctx, mb.Spec.Id) // the mailbox's owner polls the sign-in
	return &mailintakev1.BeginAuthorizationResponse{Authorization: auth}, nil
}

func (a *authProviderService) GetAuthorization(ctx context.Context, req *mailintakev1.GetAuthorizationRequest) (*mailintakev1.GetAuthorizationResponse, error) {
	mb, err := (&mailboxService{s: a.s}).load(ctx, "mailbox_id", req.GetMailboxId())
	if err != nil {
		return nil, err
	}
	auth, err := a.s.sessions.Authorization(ctx, mb.Spec.Id)
	if err != nil {
		return nil, err
	}
	if auth == nil {
		return nil, notFound("interactive sign-in of mailbox", mb.Spec.Id)
	}
	return &mailintakev1.GetAuthorizationResponse{Authorization: auth}, nil
}
