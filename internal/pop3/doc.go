// Package pop3 is mailintake's POP3 client (RFC 1939, with CAPA from RFC 2449, STLS from RFC
// 2595, AUTH from RFC 5034 and the response codes of RFC 2449 and RFC 3206), written here on
// net/textproto and crypto/tls because no usable Go POP3 module is served: the Go module proxy
// refuses github.com/knadh/go-pop3 and github.com/migadu/go-pop3, and the ones it serves get the
// basics wrong (knadh/go-pop3 does no dot-unstuffing and truncates long lines;
// TheCreeper/go-pop3 formats integers with %s and leaves RETR bodies unread). POP3 is small
// enough that a strict client is a few hundred lines we can fuzz.
//
// Dial connects (implicit TLS, STLS, or an explicit plaintext), reporting each step for a
// connection test; Conn.Authenticate logs in with the credential a provider issued (USER/PASS
// or SASL PLAIN/LOGIN for passwords, XOAUTH2 in two steps, OAUTHBEARER); Stat, List, UIDL, Top,
// Retr and RetrTo read the maildrop; Dele marks, Rset unmarks, Quit deletes.
//
// Deletion: Dele only marks. The server deletes marked messages when Quit succeeds, and
// never otherwise: Close, a failed command or a broken connection leave them on the server.
// Message numbers are valid for one session; unique-ids (UIDL) name messages across sessions,
// and duplicates are reported (UIDList.Duplicates), never hidden.
//
// Bounds, so that a hostile or broken server cannot wedge or exhaust the client:
//
//   - every command has a deadline for its whole answer (Target.CommandTimeout, or
//     TransferTimeout for lists and messages) and a context cancels it by forcing the deadline;
//   - a response line is at most Limits.MaxLine bytes, CAPA at most Limits.MaxCapabilities
//     lines, LIST and UIDL at most Limits.MaxMessages lines, a unique-id at most MaxUIDLen;
//   - a message is read into at most the caller's limit; the rest of a longer one is read and
//     thrown away up to Limits.MaxDiscard bytes (keeping the connection and its marked
//     deletions), and past that the connection is closed; memory stays within that limit and
//     one 32 KiB read buffer whatever the server announces or sends;
//   - after an answer nothing may be left unread: POP3 answers one command at a time, so
//     extra data is a protocol violation (a message whose lone "." line was not dot-stuffed,
//     or data injected after +OK to STLS).
//
// Errors are typed: *ServerError (-ERR with its response code; IN-USE, LOGIN-DELAY and
// SYS/TEMP are Temporary), *AuthError (a refused login, explained; Exchange Online's single
// answer to every failed login lists what to check), *ProtocolError, *TimeoutError,
// *ConnError, *TooLargeError, and ErrClosed, ErrNotAllowed, ErrNoSTLS, ErrInsecureAuth,
// ErrMechanismNotOffered for what was refused before anything was sent. A failure that leaves
// the connection's state unknown closes it; a -ERR or a refused login does not.
//
// Messages keep their line endings as the server sent them: net/textproto's DotReader would
// turn CRLF into LF (changing the bytes a message's hash is taken of) and has no bound on a
// line, so the dot-encoded bodies are read by this package's own reader (reader.go), which is
// fuzzed; commands go through textproto.Writer.
package pop3
