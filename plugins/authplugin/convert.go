package authplugin

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailintake/mailintake/plugins/authplugin/authpluginv1"
)

// Conversions between the SDK's types and authplugin.v1. Plugin authors never see the
// generated types.

func descriptionToProto(d Description) *authpluginv1.DescribeResponse {
	r := &authpluginv1.DescribeResponse{
		Name:           d.Name,
		Version:        d.Version,
		DisplayName:    d.DisplayName,
		Description:    d.Description,
		SaslMechanisms: d.SASLMechanisms,
		Protocols:      d.Protocols,
		Interactive:    d.Interactive,
	}
	for _, f := range d.Fields {
		t := f.Type
		if t == 0 {
			t = FieldString
		}
		r.Fields = append(r.Fields, &authpluginv1.Field{
			Name: f.Name, Label: f.Label, Help: f.Help, Type: authpluginv1.FieldType(t),
			Required: f.Required, Secret: f.Secret, Options: f.Options, DefaultValue: f.Default,
		})
	}
	return r
}

func descriptionFromProto(r *authpluginv1.DescribeResponse) Description {
	d := Description{
		Name:           r.GetName(),
		Version:        r.GetVersion(),
		DisplayName:    r.GetDisplayName(),
		Description:    r.GetDescription(),
		SASLMechanisms: r.GetSaslMechanisms(),
		Protocols:      r.GetProtocols(),
		Interactive:    r.GetInteractive(),
	}
	for _, f := range r.GetFields() {
		d.Fields = append(d.Fields, Field{
			Name: f.GetName(), Label: f.GetLabel(), Help: f.GetHelp(), Type: FieldType(f.GetType()),
			Required: f.GetRequired(), Secret: f.GetSecret(), Options: f.GetOptions(), Default: f.GetDefaultValue(),
		})
	}
	return d
}

func accountToProto(a Account) *authpluginv1.Account {
	return &authpluginv1.Account{
		MailboxId: a.MailboxID, Protocol: a.Protocol, Host: a.Host, Port: uint32(a.Port),
		Username: a.Username, Config: a.Config, Secrets: a.Secrets,
	}
}

func accountFromProto(a *authpluginv1.Account) Account {
	return Account{
		MailboxID: a.GetMailboxId(), Protocol: a.GetProtocol(), Host: a.GetHost(), Port: int(a.GetPort()),
		Username: a.GetUsername(), Config: nonNil(a.GetConfig()), Secrets: nonNil(a.GetSecrets()),
	}
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func timeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFromProto(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func durationToProto(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func credentialToProto(c Credential) *authpluginv1.Credential {
	return &authpluginv1.Credential{
		Mechanism: c.Mechanism, Identity: c.Identity, Secret: c.Secret, ExpireTime: timeToProto(c.Expiry),
	}
}

func credentialFromProto(c *authpluginv1.Credential) Credential {
	return Credential{
		Mechanism: c.GetMechanism(), Identity: c.GetIdentity(), Secret: c.GetSecret(), Expiry: timeFromProto(c.GetExpireTime()),
	}
}

func authorizationToProto(a Authorization) *authpluginv1.BeginAuthorizationResponse {
	return &authpluginv1.BeginAuthorizationResponse{
		VerificationUri: a.VerificationURI, UserCode: a.UserCode, Message: a.Message,
		ExpireTime: timeToProto(a.Expiry), Interval: durationToProto(a.Interval), Handle: a.Handle,
	}
}

func authorizationFromProto(r *authpluginv1.BeginAuthorizationResponse) Authorization {
	return Authorization{
		VerificationURI: r.GetVerificationUri(), UserCode: r.GetUserCode(), Message: r.GetMessage(),
		Expiry: timeFromProto(r.GetExpireTime()), Interval: r.GetInterval().AsDuration(), Handle: r.GetHandle(),
	}
}

func pollResultToProto(p PollResult) *authpluginv1.PollAuthorizationResponse {
	return &authpluginv1.PollAuthorizationResponse{Done: p.Done, State: p.State, Interval: durationToProto(p.Interval)}
}

func pollResultFromProto(r *authpluginv1.PollAuthorizationResponse) PollResult {
	return PollResult{Done: r.GetDone(), State: r.GetState(), Interval: r.GetInterval().AsDuration()}
}

func errorToProto(e *Error) *authpluginv1.Error {
	return &authpluginv1.Error{
		Reason: authpluginv1.Reason(e.Reason), Code: e.Code, Message: e.Message, Action: e.Action,
		SupportIds: e.SupportIDs, RetryAfter: durationToProto(e.RetryAfter),
	}
}

func errorFromProto(p *authpluginv1.Error) *Error {
	return &Error{
		Reason: Reason(p.GetReason()), Code: p.GetCode(), Message: p.GetMessage(), Action: p.GetAction(),
		SupportIDs: p.GetSupportIds(), RetryAfter: p.GetRetryAfter().AsDuration(),
	}
}
