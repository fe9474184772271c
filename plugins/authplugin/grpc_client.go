package authplugin

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailintake/mailintake/plugins/authplugin/authpluginv1"
)

// Client calls a provider running in a plugin process. The host obtains one by dispensing
// [PluginName]; it implements [Provider] and [Authorizer]. Errors a provider reported as [*Error]
// come back as *Error; transport failures come back as gRPC status errors.
type Client struct {
	rpc authpluginv1.ProviderServiceClient
}

// Describe implements [Provider].
func (c *Client) Describe(ctx context.Context) (Description, error) {
	resp, err := c.rpc.Describe(ctx, &authpluginv1.DescribeRequest{})
	if err != nil {
		return Description{}, statusToError(err)
	}
	return descriptionFromProto(resp), nil
}

// ValidateConfig implements [Provider].
func (c *Client) ValidateConfig(ctx context.Context, acct Account) error {
	resp, err := c.rpc.ValidateConfig(ctx, &authpluginv1.ValidateConfigRequest{Account: accountToProto(acct)})
	if err != nil {
		return statusToError(err)
	}
	var v Validator
	for _, fv := range resp.GetViolations() {
		v.Add(fv.GetField(), "%s", fv.GetDescription())
	}
	return v.Err()
}

// IssueCredential implements [Provider].
func (c *Client) IssueCredential(ctx context.Context, req Request) (IssueResult, error) {
	resp, err := c.rpc.IssueCredential(ctx, &authpluginv1.IssueCredentialRequest{
		Account:      accountToProto(req.Account),
		State:        req.State,
		ForceRefresh: req.ForceRefresh,
	})
	if err != nil {
		return IssueResult{}, statusToError(err)
	}
	res := IssueResult{
		Credential:   credentialFromProto(resp.GetCredential()),
		State:        resp.GetState(),
		StateChanged: resp.GetStateChanged(),
	}
	if h := resp.GetHealth(); h != nil {
		res.Health = &Health{RefreshTokenIssued: timeFromProto(h.GetRefreshTokenIssueTime()), Warnings: h.GetWarnings()}
	}
	return res, nil
}

// BeginAuthorization implements [Authorizer].
func (c *Client) BeginAuthorization(ctx context.Context, req Request) (Authorization, error) {
	resp, err := c.rpc.BeginAuthorization(ctx, &authpluginv1.BeginAuthorizationRequest{
		Account: accountToProto(req.Account),
		State:   req.State,
	})
	if err != nil {
		return Authorization{}, interactiveError(err)
	}
	return authorizationFromProto(resp), nil
}

// PollAuthorization implements [Authorizer].
func (c *Client) PollAuthorization(ctx context.Context, req Request, handle []byte) (PollResult, error) {
	resp, err := c.rpc.PollAuthorization(ctx, &authpluginv1.PollAuthorizationRequest{
		Account: accountToProto(req.Account),
		State:   req.State,
		Handle:  handle,
	})
	if err != nil {
		return PollResult{}, interactiveError(err)
	}
	return pollResultFromProto(resp), nil
}

// statusToError restores an *Error from a status detail; other errors are returned unchanged.
func statusToError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		if pe, ok := d.(*authpluginv1.Error); ok {
			return errorFromProto(pe)
		}
	}
	return err
}

// interactiveError is statusToError for the Authorizer calls: Unimplemented means the provider
// has no interactive sign-in.
func interactiveError(err error) error {
	if status.Code(err) == codes.Unimplemented {
		return ErrNotInteractive
	}
	return statusToError(err)
}

var (
	_ Provider   = (*Client)(nil)
	_ Authorizer = (*Client)(nil)
)
