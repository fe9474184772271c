package o365

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

// msError is the body Microsoft's token endpoint answers errors with.
type msError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	Timestamp        string `json:"timestamp"`
	SubError         string `json:"suberror"`
}

// explanation is what an AADSTS code means for the admin.
type explanation struct {
	reason  authplugin.Reason
	message string
	action  string
}

// aadsts maps the AADSTS codes a mailbox meets to a typed reason and one sentence telling the admin
// what to do. Microsoft warns codes may change: unknown codes fall back on the error class.
var aadsts = map[int]explanation{
	50126: {authplugin.ReasonInvalidCredentials, "Microsoft rejected the username or password",
		"Re-enter the mailbox's password (the account's Microsoft 365 sign-in password)."},
	50034: {authplugin.ReasonInvalidCredentials, "the account does not exist in this directory",
		"Check the mailbox address and the Directory (tenant) ID."},
	50076: {authplugin.ReasonMFARequired, "this account requires multi-factor authentication, which a password sign-in (ROPC) cannot do",
		"Use flow=device_code (sign in once with MFA: mailintake mailbox authorize) or flow=client_credentials (app-only access)."},
	50079: {authplugin.ReasonMFARequired, "the user must register for multi-factor authentication first",
		"Have the user register for MFA, then use flow=device_code or flow=client_credentials."},
	50053: {authplugin.ReasonAccountLocked, "the account is locked, or sign-in from this IP is blocked",
		"Check the Entra sign-in logs (error 50053) and unlock the account; retrying extends the lockout."},
	50055: {authplugin.ReasonPasswordExpired, "the account's password has expired",
		"Reset the password, then enter the new one for the mailbox."},
	50057: {authplugin.ReasonAccountDisabled, "the account is disabled in Entra ID",
		"Enable the account, or use another mailbox."},
	53003: {authplugin.ReasonConsentRequired, "a Conditional Access policy blocks this sign-in",
		"Ask the tenant admin to allow this app or location in Conditional Access."},
	530035: {authplugin.ReasonMFARequired, "security defaults block this sign-in",
		"Use flow=device_code or flow=client_credentials, which security defaults allow."},
	65001: {authplugin.ReasonConsentRequired, "no user or admin consent for the app",
		"Grant admin consent for the app's API permissions in Entra ID (Enterprise applications > Permissions)."},
	700016: {authplugin.ReasonConfigInvalid, "the Application (client) ID is not registered in this tenant",
		"Check the Application (client) ID and the Directory (tenant) ID (a multi-tenant app needs admin consent in this tenant)."},
	90002: {authplugin.ReasonConfigInvalid, "the tenant does not exist",
		"Check the Directory (tenant) ID (a typo, or an app of another cloud)."},
	7000218: {authplugin.ReasonConfigInvalid, "the app is a confidential client and the request carried no client secret",
		"In the app registration enable 'Allow public client flows' (Authentication > Advanced settings), or use flow=client_credentials with a client secret."},
	7000215: {authplugin.ReasonInvalidCredentials, "the client secret is wrong",
		"Enter the client secret's Value (not its Secret ID), or create a new secret."},
	7000222: {authplugin.ReasonInvalidCredentials, "the client secret has expired",
		"Create a new client secret in the app registration and enter it for the mailbox."},
	700025: {authplugin.ReasonConfigInvalid, "the app is a public client but a client secret was sent",
		"Remove the client secret, or make the app confidential."},
	70000: {authplugin.ReasonAuthorizationRequired, "the stored sign-in is no longer valid",
		"Sign the mailbox in again (mailintake mailbox authorize, or save the password again)."},
	70008: {authplugin.ReasonAuthorizationRequired, "the stored sign-in expired",
		"Sign the mailbox in again."},
	700082: {authplugin.ReasonAuthorizationRequired, "the stored sign-in expired after 90 days without use",
		"Sign the mailbox in again."},
	50173: {authplugin.ReasonAuthorizationRequired, "the stored sign-in was revoked (password change or revoked sessions)",
		"Sign the mailbox in again."},
	70043: {authplugin.ReasonAuthorizationRequired, "the stored sign-in expired under a Conditional Access sign-in frequency policy",
		"Sign the mailbox in again interactively (flow=device_code)."},
	9002313: {authplugin.ReasonAuthorizationRequired, "the stored sign-in is malformed",
		"Sign the mailbox in again."},
	70011: {authplugin.ReasonConfigInvalid, "the scope is not valid",
		"Check the scopes field: use https://outlook.office.com/IMAP.AccessAsUser.All (or leave it empty)."},
	700022: {authplugin.ReasonConfigInvalid, "the scopes name more than one resource",
		"Use only Exchange Online scopes (https://outlook.office.com/…) in the scopes field."},
	1002012: {authplugin.ReasonConfigInvalid, "client credentials need the .default scope",
		"Leave scopes empty for flow=client_credentials (https://outlook.office365.com/.default)."},
	9001023: {authplugin.ReasonConfigInvalid, "password sign-in is not supported on /common or /consumers",
		"Set tenant_id to the Directory (tenant) ID or verified domain."},
	500011: {authplugin.ReasonConsentRequired, "Exchange Online is not available to the app in this tenant",
		"Check that the tenant has Exchange Online and that the app was consented in it."},
	650052: {authplugin.ReasonConsentRequired, "the organisation is not subscribed to the service the app needs",
		"Check that the tenant has Exchange Online and that the app was consented in it."},
	50196: {authplugin.ReasonTemporary, "Microsoft detected a request loop",
		"Nothing: the server waits before trying again."},
	70019: {authplugin.ReasonAuthorizationExpired, "the device code expired before the sign-in",
		"Run mailintake mailbox authorize again and sign in within 15 minutes."},
}

// classes maps the RFC 6749 error class when the code is unknown.
var classes = map[string]explanation{
	"invalid_grant":          {authplugin.ReasonInvalidCredentials, "Microsoft rejected the sign-in", "Check the credentials and the app registration."},
	"invalid_client":         {authplugin.ReasonConfigInvalid, "Microsoft rejected the app's credentials", "Check the Application (client) ID and the client secret."},
	"unauthorized_client":    {authplugin.ReasonConfigInvalid, "the app may not use this sign-in flow", "Check the app registration's platform settings."},
	"invalid_scope":          {authplugin.ReasonConfigInvalid, "the scope is not valid", "Check the scopes field."},
	"interaction_required":   {authplugin.ReasonMFARequired, "an interactive sign-in is needed", "Use flow=device_code."},
	"consent_required":       {authplugin.ReasonConsentRequired, "consent is missing", "Grant admin consent for the app."},
	"authorization_declined": {authplugin.ReasonAuthorizationExpired, "the user declined the sign-in", "Run mailintake mailbox authorize again."},
	"expired_token":          {authplugin.ReasonAuthorizationExpired, "the device code expired", "Run mailintake mailbox authorize again."},
	"temporarily_unavailable": {authplugin.ReasonTemporary, "Microsoft's sign-in service is temporarily unavailable",
		"Nothing: the server tries again."},
}

// errorFromBody turns a token endpoint error into a typed provider error, keeping the AADSTS
// code and the trace and correlation ids for support.
func errorFromBody(status int, body []byte) *authplugin.Error {
	var me msError
	if err := json.Unmarshal(body, &me); err != nil || me.Error == "" {
		reason := authplugin.ReasonTemporary
		if status >= 400 && status < 500 {
			reason = authplugin.ReasonConfigInvalid
		}
		return &authplugin.Error{Reason: reason, Message: fmt.Sprintf("the token endpoint answered HTTP %d without an OAuth error", status),
			Action: "Check the authority URL."}
	}
	e := &authplugin.Error{SupportIDs: map[string]string{}}
	for k, v := range map[string]string{"trace_id": me.TraceID, "correlation_id": me.CorrelationID, "timestamp": me.Timestamp} {
		if v != "" {
			e.SupportIDs[k] = v
		}
	}
	code := 0
	if len(me.ErrorCodes) > 0 {
		code = me.ErrorCodes[0]
		e.Code = fmt.Sprintf("AADSTS%d", code)
	}
	ex, ok := aadsts[code]
	if !ok {
		ex, ok = classes[me.Error]
	}
	if !ok {
		ex = explanation{authplugin.ReasonConfigInvalid, "Microsoft refused the sign-in (" + me.Error + ")", "See the error code in Microsoft's reference (AADSTS error codes)."}
	}
	e.Reason, e.Message, e.Action = ex.reason, ex.message, ex.action
	if desc := firstLine(me.ErrorDescription); desc != "" {
		e.Message += " — " + desc
	}
	return e
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\r\n")
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}
