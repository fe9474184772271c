package google

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mailintake/mailintake/plugins/authplugin"
)

// Admin console paths, as of 2025 (admin.google.com, as a super admin).
const (
	dwdPath        = "Admin console (admin.google.com) > Security > Access and data control > API controls > Manage Domain Wide Delegation"
	appAccessPath  = "Admin console (admin.google.com) > Security > Access and data control > API controls > Manage Third-Party App Access"
	audiencePath   = "Google Cloud console > Google Auth platform > Audience"
	credentialPath = "Google Cloud console > Google Auth platform > Clients"
	keysPath       = "Google Cloud console > IAM & Admin > Service accounts > the account > Keys > Add key > Create new key > JSON"
)

// googleError is the body of Google's token endpoint errors, and the error of a sign-in's
// redirect.
type googleError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorSubtype     string `json:"error_subtype"`
}

// grant is what a failed request was: it decides what an ambiguous error means.
type grant int

const (
	grantJWT      grant = iota // a service account's token
	grantRefresh               // a refresh of a user's sign-in
	grantCode                  // the code of a sign-in
	grantRedirect              // the sign-in's redirect (the browser)
)

// errCtx is what explains an error beyond its body.
type errCtx struct {
	s     *settings
	grant grant
	st    state     // the stored sign-in, for refreshes
	now   time.Time // for the sign-in's age
}

// explain turns a Google OAuth error into a typed provider error: plain words and what to do.
func explain(ge googleError, c errCtx) *authplugin.Error {
	desc := firstLine(ge.ErrorDescription)
	e := &authplugin.Error{Code: ge.Error}
	set := func(r authplugin.Reason, msg, action string) {
		e.Reason, e.Message, e.Action = r, msg, action
	}
	s := c.s
	user := s.username
	authorize := "Run 'mailintake mailbox authorize MAILBOX_ID' and sign in again as " + user + "."
	lower := strings.ToLower(desc)
	switch ge.Error {
	case "invalid_grant":
		switch {
		case ge.ErrorSubtype == "invalid_rapt" || strings.Contains(lower, "invalid_rapt"):
			set(authplugin.ReasonAuthorizationRequired, "Google requires the user to sign in again (a reauthentication policy of the organisation)",
				authorize+" If it recurs, the Workspace admin can exempt the app from reauthentication (Admin console > Security > Access and data control > Google Cloud session control).")
		case c.grant == grantJWT && strings.Contains(lower, "signature"):
			set(authplugin.ReasonInvalidCredentials, "Google does not accept the service account's key (it was deleted or disabled, or belongs to another service account)",
				"Create a new key ("+keysPath+") and save the JSON file as the mailbox's service_account_key.")
		case c.grant == grantJWT && strings.Contains(lower, "account not found"):
			set(authplugin.ReasonInvalidCredentials, "Google knows no service account "+s.key.ClientEmail+" (it was deleted)",
				"Create a service account and a key, grant it domain-wide delegation, and save its JSON key as service_account_key.")
		case c.grant == grantJWT && (strings.Contains(lower, "invalid email") || strings.Contains(lower, "user id")):
			set(authplugin.ReasonConfigInvalid, "Google knows no user "+user+" in the Workspace (the service account acts as the mailbox's username)",
				"Set the mailbox's username to the user's primary address in Google Workspace: not an alias, a group or a Google Group's address.")
		case c.grant == grantJWT && (strings.Contains(lower, "short-lived") || strings.Contains(lower, "iat") || strings.Contains(lower, "exp")):
			set(authplugin.ReasonConfigInvalid, "Google refused the token request's time: the server's clock is off",
				"Synchronise the server's clock (NTP); Google accepts a signed request for at most an hour.")
		case c.grant == grantJWT:
			set(authplugin.ReasonInvalidCredentials, "Google refused the service account's token request",
				"Check the service account key and its domain-wide delegation ("+dwdPath+").")
		case c.grant == grantCode:
			set(authplugin.ReasonAuthorizationExpired, "the sign-in's code is no longer valid (it expired after 10 minutes, or was used already)",
				"Run 'mailintake mailbox authorize MAILBOX_ID' again and finish the sign-in within a few minutes.")
		default: // a refresh
			msg := "Google no longer accepts the stored sign-in: it expired or was revoked"
			age := time.Duration(0)
			if !c.st.SignedIn.IsZero() {
				age = c.now.Sub(c.st.SignedIn)
			}
			days := int(age.Hours() / 24)
			switch {
			case s.testing() || (age >= testingLifetime-time.Hour && age < testingLifetime+2*24*time.Hour):
				msg += fmt.Sprintf(" — the sign-in is %d days old, and Google ends the sign-ins of apps in Testing publishing status after 7 days", days)
				set(authplugin.ReasonAuthorizationRequired, msg,
					"Make the app Internal (for a Workspace's own mailboxes) or publish it ("+audiencePath+"), then "+
						"run 'mailintake mailbox authorize MAILBOX_ID' and sign in again as "+user+": the new sign-in does not end after 7 days.")
			case !c.st.RefreshExpires.IsZero() && !c.now.Before(c.st.RefreshExpires):
				msg += " — the user granted access for a limited time, which is over"
				set(authplugin.ReasonAuthorizationRequired, msg, authorize+" Grant access without a time limit.")
			default:
				set(authplugin.ReasonAuthorizationRequired, msg,
					authorize+" (Google ends a sign-in when the user removes the app's access at myaccount.google.com > Security, changes the password (Gmail scopes end with it), "+
						"after 6 months unused, or when more than 100 newer sign-ins of the same app and user replaced it.)")
			}
		}
	case "unauthorized_client":
		if c.grant == grantJWT {
			id := s.key.ClientID
			if id == "" {
				id = "the service account's client_id"
			}
			set(authplugin.ReasonConsentRequired, "domain-wide delegation of https://mail.google.com/ is not granted to the service account "+s.key.ClientEmail,
				"As a Workspace super admin: "+dwdPath+" > Add new: Client ID "+id+" (the key's client_id, the service account's Unique ID), "+
					"OAuth scopes https://mail.google.com/ (exactly, with the slash), Authorize. It can take a few minutes, rarely up to 24 hours, to apply.")
		} else {
			set(authplugin.ReasonConfigInvalid, "the OAuth client may not use this sign-in",
				"Use an OAuth client of type Desktop app ("+credentialPath+" > Create client > Desktop app).")
		}
	case "admin_policy_enforced":
		set(authplugin.ReasonConsentRequired, "the Workspace admin's policy does not let this app reach "+user+"'s Gmail",
			"As a Workspace admin: "+appAccessPath+" > Configure new app (OAuth App Name Or Client ID: "+s.clientID+") > Trusted, "+
				"and check that Gmail is not restricted for it (API controls > Manage Google Services). Then sign in again.")
	case "org_internal":
		set(authplugin.ReasonConsentRequired, "the app is Internal to another Google Workspace organisation than "+user+"'s",
			"Create the OAuth client in a Google Cloud project of "+user+"'s organisation, or make the app External ("+audiencePath+").")
	case "access_denied":
		set(authplugin.ReasonConsentRequired, "the sign-in was cancelled, or access to Gmail was refused on Google's consent screen",
			"Run 'mailintake mailbox authorize MAILBOX_ID' again, sign in as "+user+" and allow access, with the box for Gmail ticked.")
	case "policy_enforced":
		set(authplugin.ReasonConsentRequired, "Google's Advanced Protection Program of the account blocks this app from Gmail",
			"Use flow service_account (domain-wide delegation), which Advanced Protection does not block, or take the account out of the programme.")
	case "invalid_client", "deleted_client", "disabled_client":
		switch {
		case strings.Contains(lower, "not found") || ge.Error == "deleted_client":
			set(authplugin.ReasonConfigInvalid, "Google knows no OAuth client "+s.clientID+" (a typo, or it was deleted)",
				"Copy the Client ID of a Desktop app client from "+credentialPath+".")
		case strings.Contains(lower, "disabled") || ge.Error == "disabled_client":
			set(authplugin.ReasonConfigInvalid, "the OAuth client is disabled", "Enable it, or use another one ("+credentialPath+").")
		case c.grant == grantJWT:
			set(authplugin.ReasonInvalidCredentials, "Google refused the service account", "Create a new key ("+keysPath+").")
		default:
			set(authplugin.ReasonInvalidCredentials, "Google refused the OAuth client's secret",
				"Copy the client secret of "+s.clientID+" from "+credentialPath+" (add a new secret if it is hidden) and save it as client_secret.")
		}
	case "invalid_scope":
		set(authplugin.ReasonConfigInvalid, "Google refused the scope https://mail.google.com/", "Check that the endpoint is Google's OAuth endpoint.")
	case "redirect_uri_mismatch":
		set(authplugin.ReasonConfigInvalid, "Google refused the loopback redirect address",
			"Use an OAuth client of type Desktop app: a Web application client accepts only registered redirect addresses.")
	case "rate_limit_exceeded", "temporarily_unavailable", "internal_failure", "server_error":
		set(authplugin.ReasonTemporary, "Google's sign-in service is busy or unavailable", "Nothing: the server tries again.")
	default:
		set(authplugin.ReasonConfigInvalid, "Google refused the sign-in ("+ge.Error+")", "See Google's OAuth 2.0 error reference for "+ge.Error+".")
	}
	if d := strings.TrimRight(desc, ". "); d != "" && d != ge.Error {
		e.Message += " — Google: " + d
	}
	return e
}

// errorFromBody turns a token endpoint answer that is not a token into a typed error.
func errorFromBody(status int, body []byte, c errCtx) *authplugin.Error {
	var ge googleError
	if err := json.Unmarshal(body, &ge); err != nil || ge.Error == "" {
		reason := authplugin.ReasonTemporary
		action := "Nothing: the server tries again."
		if status >= 400 && status < 500 && status != 429 {
			reason, action = authplugin.ReasonConfigInvalid, "Check the endpoint field (empty for Google)."
		}
		return &authplugin.Error{Reason: reason, Code: fmt.Sprintf("HTTP %d", status),
			Message: fmt.Sprintf("Google's token endpoint answered HTTP %d without an OAuth error", status), Action: action}
	}
	if status >= 500 {
		return &authplugin.Error{Reason: authplugin.ReasonTemporary, Code: ge.Error,
			Message: "Google's token endpoint failed: " + firstLine(ge.ErrorDescription), Action: "Nothing: the server tries again."}
	}
	return explain(ge, c)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(strings.TrimRight(s, "\r"))
}
