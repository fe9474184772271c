// Package smtpsend sends a mailbox's outbound mail: it composes RFC 5322 messages (Compose for a
// structured Draft, PrepareRaw for bytes the caller wrote) with replies threaded to their
// original, and submits them to the mailbox's submission server with go-smtp (Dial,
// Conn.Authenticate, Conn.Send, or Send for all three), authenticating with the credential the
// mailbox's auth provider issued (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER).
//
// Every failure is an *Error that says how far the message got, so a caller never sends twice:
//
//   - Temporary: a 4xx reply, or a connection that failed or timed out before the final dot of
//     DATA was written. Nothing was accepted; retry later.
//   - Permanent: a 5xx reply (or a local refusal such as a missing STARTTLS). Retrying the same
//     message changes nothing; Error.Explanation says what to fix.
//   - Unknown: the whole message and its final dot were written, and the connection broke or
//     timed out before the server answered. The server may have accepted it: never resend
//     automatically.
//
// A refused login is also an *AuthError (errors.As), which says whether a token login refused
// with a cached token is worth one more try with a freshly issued one.
//
// Every step has a deadline (Target's DialTimeout, CommandTimeout, FinalTimeout), because a
// stalling server must not hold a send forever; a context cancels by closing the connection.
package smtpsend
