package imapconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailintake/mailintake/internal/offheap"
	"github.com/mailintake/mailintake/internal/saslclient"
)

// AuthError is a refusal of the credential by the mail server.
type AuthError struct {
	Mechanism string
	Text      string // the server's words
	Code      string // the response code, e.g. AUTHENTICATIONFAILED
	// TokenRejected is set when the server rejected an OAuth token (an XOAUTH2 error challenge
	// or an OAUTHBEARER error), whatever its final status.
	TokenRejected bool
}

func (e *AuthError) Error() string {
	s := "the mail server refused the " + e.Mechanism + " login"
	if e.Code != "" {
		s += " [" + e.Code + "]"
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// IsAuthError reports whether err is a refused login.
func IsAuthError(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae)
}

// Authenticate signs in with a credential. A refusal is an *AuthError.
func (c *Conn) Authenticate(ctx context.Context, cred Credential) error {
	mech := strings.ToUpper(cred.Mechanism)
	caps := c.c.Caps()
	if caps.Has(imap.CapLoginDisabled) && (mech == MechPlain || mech == MechLogin) && !caps.Has(imap.AuthCap(mech)) {
		return &AuthError{Mechanism: mech, Text: "the server disables password logins on this connection (LOGINDISABLED): use TLS or STARTTLS"}
	}
	var sc any
	err := c.guard(ctx, 0, "authentication", func() error {
		if (mech == MechPlain || mech == MechLogin) && !caps.Has(imap.AuthCap(mech)) {
			// Servers that offer no SASL mechanism for passwords take the LOGIN command.
			return c.c.Login(cred.Identity, cred.Secret).Wait()
		}
		cl, err := saslClient(Credential{Mechanism: mech, Identity: cred.Identity, Secret: cred.Secret}, c.target.Host, c.target.Port)
		if err != nil {
			return err
		}
		sc = cl
		return c.c.Authenticate(cl)
	})
	if err == nil {
		return nil
	}
	ae := &AuthError{Mechanism: mech}
	if r := saslclient.Rejection(sc); r != "" {
		ae.TokenRejected, ae.Text = true, r
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		if ae.Text == "" {
			ae.Text = ie.Text
		}
		ae.Code = string(ie.Code)
		if ie.Type == imap.StatusResponseTypeNo || ae.TokenRejected {
			return ae
		}
	}
	if ae.TokenRejected {
		return ae
	}
	return fmt.Errorf("authenticating: %w", err)
}

// Selected describes the selected folder.
type Selected struct {
	Name        string
	UIDValidity uint32
	UIDNext     uint32
	NumMessages uint32
}

// ErrNoSuchFolder is returned by Select for a missing folder.
var ErrNoSuchFolder = errors.New("no such folder")

// Select selects a folder read-write ("/" between levels).
func (c *Conn) Select(ctx context.Context, folder string) (Selected, error) {
	folder, err := c.ServerFolder(ctx, folder)
	if err != nil {
		return Selected{}, err
	}
	var data *imap.SelectData
	err = c.guard(ctx, 0, "SELECT", func() error {
		var err error
		data, err = c.c.Select(folder, nil).Wait()
		return err
	})
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
			if ie.Code == imap.ResponseCodeNonExistent || strings.Contains(strings.ToLower(ie.Text), "exist") {
				return Selected{}, fmt.Errorf("folder %q: %w (%s)", folder, ErrNoSuchFolder, ie.Text)
			}
			return Selected{}, fmt.Errorf("folder %q cannot be selected: %s", folder, ie.Text)
		}
		return Selected{}, err
	}
	s := Selected{Name: folder, UIDValidity: data.UIDValidity, UIDNext: uint32(data.UIDNext), NumMessages: data.NumMessages}
	if s.UIDNext == 0 {
		// RFC 2060 servers may omit UIDNEXT; find it from the highest UID.
		uids, err := c.SearchUIDs(ctx, 1, false)
		if err != nil {
			return Selected{}, err
		}
		s.UIDNext = 1
		if len(uids) > 0 {
			s.UIDNext = uids[len(uids)-1] + 1
		}
	}
	c.mu.Lock()
	c.selected = &s
	c.mu.Unlock()
	return s, nil
}

// SearchUIDs returns the UIDs from `from` on, ascending; unseenOnly restricts to messages
// without \Seen.
func (c *Conn) SearchUIDs(ctx context.Context, from uint32, unseenOnly bool) ([]uint32, error) {
	if from == 0 {
		from = 1
	}
	crit := &imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: imap.UID(from), Stop: 0}}}}
	if unseenOnly {
		crit.NotFlag = []imap.Flag{imap.FlagSeen}
	}
	var data *imap.SearchData
	err := c.guard(ctx, 0, "UID SEARCH", func() error {
		var err error
		data, err = c.c.UIDSearch(crit, nil).Wait()
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, u := range data.AllUIDs() {
		// "n:*" always matches the highest UID, even below n (RFC 3501 6.4.8).
		if uint32(u) >= from {
			out = append(out, uint32(u))
		}
	}
	sortUIDs(out)
	return out, nil
}

func sortUIDs(u []uint32) {
	for i := 1; i < len(u); i++ {
		for j := i; j > 0 && u[j] < u[j-1]; j-- {
			u[j], u[j-1] = u[j-1], u[j]
		}
	}
}

// Meta is what is known of a message before its body is fetched.
type Meta struct {
	UID          uint32
	Size         int64
	InternalDate time.Time
	Flags        []string
}

func uidSet(uids []uint32) imap.UIDSet {
	var s imap.UIDSet
	for _, u := range uids {
		s.AddNum(imap.UID(u))
	}
	return s
}

// FetchMeta fetches size, internal date and flags of messages.
func (c *Conn) FetchMeta(ctx context.Context, uids []uint32) (map[uint32]Meta, error) {
	out := map[uint32]Meta{}
	if len(uids) == 0 {
		return out, nil
	}
	err := c.guard(ctx, 0, "UID FETCH", func() error {
		msgs, err := c.c.Fetch(uidSet(uids), &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true, Flags: true}).Collect()
		for _, m := range msgs {
			out[uint32(m.UID)] = metaOf(m)
		}
		return err
	})
	return out, err
}

func metaOf(m *imapclient.FetchMessageBuffer) Meta {
	meta := Meta{UID: uint32(m.UID), Size: m.RFC822Size, InternalDate: m.InternalDate}
	for _, f := range m.Flags {
		meta.Flags = append(meta.Flags, string(f))
	}
	return meta
}

// ErrGone is returned when a message is no longer in the folder.
var ErrGone = errors.New("the message is no longer in the folder")

// TooLargeError is returned by FetchRaw when the server sends a body larger than the limit,
// whatever size it announced before. The connection is closed (a literal cannot be abandoned
// half read); Head holds the body's first bytes, enough for its header in most cases.
type TooLargeError struct {
	UID   uint32
	Size  int64 // the size of the literal the server announced
	Limit int64
	Head  []byte
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the server sent a body of %d bytes for UID %d, over the limit of %d bytes", e.Size, e.UID, e.Limit)
}

// abort ends a command whose response is being read: the connection is closed under the
// client (go-imap's Close would wait for the response to be read to its end), then the rest of
// the response is drained, which fails fast, so the client's reader stops.
func (c *Conn) abort(cmd *imapclient.FetchCommand) {
	c.raw.Close()
	cmd.Close()
	c.c.Close()
}

// headBytes is how much of an oversized body TooLargeError keeps.
const headBytes = 64 << 10

// FetchRaw fetches a message's bytes and meta with UID FETCH (BODY.PEEK[] ...). A body over
// limit bytes is refused with *TooLargeError (the connection is closed); a message no longer in
// the folder is ErrGone. The caller calls Release when done with the bytes.
func (c *Conn) FetchRaw(ctx context.Context, uid uint32, limit int64) (Fetched, error) {
	var got *Fetched
	err := c.FetchBodies(ctx, []uint32{uid}, limit, func(f Fetched) error {
		got = &f
		return nil
	})
	if err != nil {
		if got != nil {
			got.Release() // the body arrived, then the command failed: nobody will hold it
		}
		return Fetched{}, err
	}
	if got == nil {
		return Fetched{}, ErrGone
	}
	return *got, nil
}

// Fetched is one message read by FetchBodies.
type Fetched struct {
	Meta Meta
	Raw  []byte
	// what the body took from the connection's Budget
	budget *Budget
	taken  int64
}

// Release gives the body's bytes back to the connection's Budget and its buffer to the next
// bodies (internal/offheap): the caller no longer holds Raw, nor anything sharing its bytes (a
// parsed message shares nothing with it, except the raw bytes of one that could not be parsed:
// those the caller copies). Release is called once per Fetched, on the copy that was used.
func (f *Fetched) Release() {
	f.budget.Release(f.taken)
	f.taken = 0
	offheap.Free(f.Raw)
	f.Raw = nil
}

// FetchBodies fetches the bytes and meta of several messages with one UID FETCH and passes each
// to each as soon as its body has arrived, while the server goes on sending the next: one round
// trip for the batch instead of one per message, and the caller can parse a message while the
// next is on the wire. Messages no longer in the folder are left out. A body over limit bytes
// ends the batch with *TooLargeError, and an error from each ends it with that error; either
// way the connection is closed, as a literal cannot be abandoned half read.
//
// Each body streams from the connection into one buffer of its announced size, so a server
// that lies about sizes or sends a huge literal cannot make the client allocate more than the
// limit. Its bytes are taken from the target's Budget before they are read (the server waits
// meanwhile); each owns the Fetched it is given and calls Release when done with it.
func (c *Conn) FetchBodies(ctx context.Context, uids []uint32, limit int64, each func(Fetched) error) error {
	if len(uids) == 0 {
		return nil
	}
	want := make(map[uint32]bool, len(uids))
	for _, u := range uids {
		want[u] = true
	}
	var stop error // set when the batch was ended on purpose
	err := c.guard(ctx, 10*time.Minute, "UID FETCH BODY.PEEK[]", func() error {
		cmd := c.c.Fetch(uidSet(uids), &imap.FetchOptions{
			UID: true, RFC822Size: true, InternalDate: true, Flags: true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}},
		})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			var f Fetched
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch it := item.(type) {
				case imapclient.FetchItemDataUID:
					f.Meta.UID = uint32(it.UID)
				case imapclient.FetchItemDataRFC822Size:
					f.Meta.Size = it.Size
				case imapclient.FetchItemDataInternalDate:
					f.Meta.InternalDate = it.Time
				case imapclient.FetchItemDataFlags:
					for _, fl := range it.Flags {
						f.Meta.Flags = append(f.Meta.Flags, string(fl))
					}
				case imapclient.FetchItemDataBodySection:
					if it.Literal == nil {
						continue
					}
					if size := it.Literal.Size(); size > limit {
						head, _ := io.ReadAll(io.LimitReader(it.Literal, headBytes))
						// go-imap routes a response to the command only once a UID before the
						// body named it, so f.Meta.UID is known here.
						stop = &TooLargeError{UID: f.Meta.UID, Size: size, Limit: limit, Head: head}
						f.Release() // an earlier body section of the same message
						c.abort(cmd)
						return stop
					}
					f.Release() // a second body section for the same message
					taken, err := c.target.Budget.Acquire(ctx, it.Literal.Size())
					if err != nil {
						c.abort(cmd)
						return err
					}
					f.budget, f.taken = c.target.Budget, taken
					// One buffer of the announced size, filled in place (a bytes.Buffer would grow
					// and copy it again near its end), lent outside the heap and reused.
					f.Raw = offheap.Get(int(it.Literal.Size()))
					_, err = io.ReadFull(c.announced(it.Literal, it.Literal.Size()), f.Raw)
					c.bc.expect(0)
					if err != nil {
						f.Release()
						c.abort(cmd)
						return err
					}
				}
			}
			if !want[f.Meta.UID] {
				f.Release()
				continue // a response for a message that was not asked for, or a flag update
			}
			if f.Raw == nil {
				c.abort(cmd)
				return fmt.Errorf("the server returned no body for UID %d", f.Meta.UID)
			}
			delete(want, f.Meta.UID) // a second response for the same UID is ignored
			if err := each(f); err != nil {
				stop = err
				c.abort(cmd)
				return err
			}
		}
		return cmd.Close()
	})
	if stop != nil {
		return stop
	}
	return err
}

// announced returns r, a literal of size bytes, read so that the connection knows before each
// read how much of it is left (bufferedConn.expect): the socket then wakes its reader for large
// reads. The caller clears the announcement (c.bc.expect(0)) as soon as it stops reading r,
// whether or not r was read to its end: what is left of it is then read (or discarded by
// imapclient) with the mark down.
func (c *Conn) announced(r io.Reader, size int64) io.Reader {
	return &announcedReader{r: r, bc: c.bc, left: size}
}

// announcedReader tells its connection, before each read, how much of a literal is left.
type announcedReader struct {
	r    io.Reader
	bc   *bufferedConn
	left int64
}

func (a *announcedReader) Read(p []byte) (int, error) {
	a.bc.expect(a.left)
	n, err := a.r.Read(p)
	a.left -= int64(n)
	return n, err
}

// FetchHeader fetches a message's header section with BODY.PEEK[HEADER].
func (c *Conn) FetchHeader(ctx context.Context, uid uint32) ([]byte, error) {
	var hdr []byte
	err := c.guard(ctx, 0, "UID FETCH BODY.PEEK[HEADER]", func() error {
		msgs, err := c.c.Fetch(uidSet([]uint32{uid}), &imap.FetchOptions{UID: true,
			BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}}}).Collect()
		for _, m := range msgs {
			for _, b := range m.BodySection {
				hdr = b.Bytes
			}
		}
		return err
	})
	return hdr, err
}

// StreamRaw writes a message's bytes to w as they arrive, without holding them in memory.
func (c *Conn) StreamRaw(ctx context.Context, uid uint32, w io.Writer) (int64, error) {
	var n int64
	found := false
	err := c.guard(ctx, 30*time.Minute, "UID FETCH BODY.PEEK[]", func() error {
		cmd := c.c.Fetch(uidSet([]uint32{uid}), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			for item := msg.Next(); item != nil; item = msg.Next() {
				if b, ok := item.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
					found = true
					m, err := io.Copy(w, c.announced(b.Literal, b.Literal.Size()))
					c.bc.expect(0) // a failed write leaves the rest unread (Close discards it)
					n += m
					if err != nil {
						cmd.Close()
						return err
					}
				}
			}
		}
		return cmd.Close()
	})
	if err == nil && !found {
		return 0, ErrGone
	}
	return n, err
}

// MarkSeen sets \Seen.
func (c *Conn) MarkSeen(ctx context.Context, uids []uint32) error {
	return c.guard(ctx, 0, "UID STORE +FLAGS (\\Seen)", func() error {
		return c.c.Store(uidSet(uids), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
	})
}

// CanIdle reports whether the server supports IDLE.
func (c *Conn) CanIdle() bool {
	caps := c.c.Caps()
	return caps.Has(imap.CapIdle) || caps.Has(imap.CapIMAP4rev2)
}

// Noop asks the server for updates (used to poll servers without IDLE).
func (c *Conn) Noop(ctx context.Context) error {
	return c.guard(ctx, 0, "NOOP", func() error { return c.c.Noop().Wait() })
}

// Logout ends the session politely and closes the connection.
func (c *Conn) Logout() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.guard(ctx, 5*time.Second, "LOGOUT", func() error { return c.c.Logout().Wait() })
	c.Close()
}
