// Package authplugin is the public SDK for mailintake auth provider plugins.
//
// An auth provider turns a mailbox's configuration into a credential the server presents to the
// mail server (a password for SASL PLAIN, an OAuth access token for XOAUTH2, …). Providers run as
// separate executables named mailintake-auth-<name>, found in the server's plugin directory, and
// speak the authplugin.v1 gRPC protocol through hashicorp/go-plugin. A Go provider implements
// [Provider] and calls [Serve] from main:
//
//	func main() { authplugin.Serve(myProvider{}) }
//
// # Lifecycle
//
// The server starts a provider's process the first time a mailbox needs it and keeps it running:
// one process serves every mailbox that uses the provider, concurrently, so a provider must be safe
// for concurrent use. The server calls [Provider.Describe] to learn the fields, [Provider.ValidateConfig]
// before it saves a mailbox, and [Provider.IssueCredential] whenever it needs a credential it has not
// cached. Every call carries a deadline. A crashed or hung process is restarted.
//
// # State
//
// Providers keep no state of their own. Whatever must survive a restart (a refresh token, say) is
// returned as [IssueResult.State]; the server stores it encrypted and passes it back in
// [Request.State] next time. A provider that rotates state must return it at once.
//
// # Errors
//
// Failures the admin must act on are returned as [*Error] with a [Reason]. They cross the process
// boundary intact, so errors.Is(err, authplugin.ErrInvalidCredentials) holds in the server.
//
// # Logging
//
// stdout belongs to go-plugin's handshake: never write to it. Log with [Logger], which writes
// hclog-style JSON to stderr so the server keeps the levels. Never log secrets.
//
// # Optional capabilities
//
// A provider that supports an interactive sign-in (e.g. a device code flow) also implements
// [Authorizer]. New capabilities arrive as new optional interfaces, never as changes to [Provider].
//
// # Versions
//
// The SDK is a Go module of its own, tagged plugins/authplugin/vX.Y.Z apart from the server:
//
//	go get github.com/mailintake/mailintake/plugins/authplugin@v1.0.0
//
// What the server and a provider speak is the protocol version ([ProtocolVersion]), not the
// SDK's: every v1.x.y release speaks protocol version 1, and a server speaks every protocol
// version the SDK releases before it spoke, so a provider built with an older SDK keeps working.
// A provider speaking only a version the server does not know is refused with a
// [*ProtocolVersionError] naming both. The README says more.
//
// # Checking a provider
//
// Package authplugintest starts a provider executable as the server does and reports each thing
// it gets wrong (handshake, certificate, health, Describe, typed errors, stdout, speed, stop), for
// a provider in any language.
package authplugin
