package imapconn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Namespace is where a server keeps the signed-in user's folders (RFC 2342): personal folders
// are named Prefix + path, levels separated by Delim. Courier and Cyrus answer ("INBOX." "."),
// Dovecot and mox ("" "/") or ("" ".").
type Namespace struct {
	Prefix string
	Delim  rune // 0: a flat namespace
	// Others are the prefixes of the other users' and the shared namespaces: a path that starts
	// with one names a folder there and is left as it is.
	Others []string
}

// Namespace returns the server's personal namespace, asked once per connection: NAMESPACE
// where the server has it, else the delimiter of LIST "" "" with no prefix.
func (c *Conn) Namespace(ctx context.Context) (Namespace, error) {
	c.mu.Lock()
	ns := c.ns
	c.mu.Unlock()
	if ns != nil {
		return *ns, nil
	}
	var out Namespace
	caps := c.c.Caps()
	if caps.Has(imap.CapNamespace) || caps.Has(imap.CapIMAP4rev2) {
		var data *imap.NamespaceData
		err := c.guard(ctx, 0, "NAMESPACE", func() error {
			var err error
			data, err = c.c.Namespace().Wait()
			return err
		})
		if err != nil && !isNo(err) {
			return Namespace{}, err
		}
		if err == nil && data != nil && len(data.Personal) > 0 {
			out.Prefix, out.Delim = data.Personal[0].Prefix, data.Personal[0].Delim
			for _, d := range append(append([]imap.NamespaceDescriptor{}, data.Other...), data.Shared...) {
				if d.Prefix != "" {
					out.Others = append(out.Others, d.Prefix)
				}
			}
			c.mu.Lock()
			c.ns = &out
			c.mu.Unlock()
			return out, nil
		}
	}
	err := c.guard(ctx, 0, "LIST", func() error {
		items, err := c.c.List("", "", nil).Collect()
		for _, it := range items {
			out.Delim = it.Delim
		}
		return err
	})
	if err != nil {
		return Namespace{}, err
	}
	c.mu.Lock()
	c.ns = &out
	c.mu.Unlock()
	return out, nil
}

func isNo(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo
}

// Resolve turns a folder path as mailintake accepts it ("/" between levels) into the server's
// name for it: the levels joined with the namespace's delimiter, inside the personal namespace.
// "Processed/Tickets" is "Processed.Tickets" on a Dovecot with Maildir++ folders and
// "INBOX.Processed.Tickets" on Courier or Cyrus. INBOX, and a path that already names a
// namespace ("INBOX/Processed", "INBOX.Processed" there; a shared folder's prefix), stay where
// they are.
func (ns Namespace) Resolve(folder string) string {
	if strings.EqualFold(folder, "INBOX") {
		return "INBOX"
	}
	name := folder
	if ns.Delim != 0 && ns.Delim != '/' {
		name = strings.ReplaceAll(folder, "/", string(ns.Delim))
	}
	if ns.Prefix == "" {
		return name
	}
	if hasPrefixFold(name, ns.Prefix) {
		if strings.EqualFold(name[:min(5, len(name))], "INBOX") {
			return "INBOX" + name[5:] // children of INBOX are named under its canonical spelling
		}
		return name
	}
	for _, p := range ns.Others {
		if hasPrefixFold(name, p) {
			return name
		}
	}
	// "INBOX" + delimiter written without the namespace's exact spelling ("inbox.x") is the
	// personal namespace too.
	if strings.EqualFold(strings.TrimSuffix(ns.Prefix, string(ns.Delim)), "INBOX") && hasPrefixFold(name, "INBOX"+string(ns.Delim)) {
		return "INBOX" + name[len("INBOX"):]
	}
	return ns.Prefix + name
}

// hasPrefixFold reports whether s starts with prefix, INBOX compared without case (RFC 3501
// 5.1: INBOX is case-insensitive), the rest exactly.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	if strings.HasPrefix(strings.ToUpper(prefix), "INBOX") && strings.EqualFold(s[:5], "INBOX") {
		return s[5:len(prefix)] == prefix[5:]
	}
	return s[:len(prefix)] == prefix
}

// ServerFolder turns a folder path written with "/" between levels into the server's name for
// it (see Namespace.Resolve).
func (c *Conn) ServerFolder(ctx context.Context, folder string) (string, error) {
	if strings.EqualFold(folder, "INBOX") {
		return "INBOX", nil
	}
	ns, err := c.Namespace(ctx)
	if err != nil {
		return "", err
	}
	return ns.Resolve(folder), nil
}

// Outcome tells what an after-ack action left behind when it succeeded.
type Outcome struct {
	// Kept is set when the messages were copied (or are to be deleted) but stay in the folder
	// flagged \Deleted \Seen: the server lacks UIDPLUS, and a plain EXPUNGE would also remove
	// every other message another client flagged \Deleted.
	Kept bool
}

// KeptNote says why messages stay in the folder when an action's Outcome is Kept.
const KeptNote = "the server lacks UIDPLUS (UID EXPUNGE), so moved or deleted messages stay in the folder flagged \\Deleted \\Seen: " +
	"a plain EXPUNGE would also erase mail other clients flagged \\Deleted. They disappear when a mail client or the server expunges the folder."

// Move moves messages to folder ("/" between levels), creating the folder when the server says
// it is missing. With MOVE it is one atomic UID MOVE. Without it (Courier), the messages are
// copied and, only once the server confirmed the copy, flagged \Deleted and removed with
// UID EXPUNGE of exactly those UIDs; a server without UIDPLUS gets no EXPUNGE at all (Outcome.Kept).
// go-imap's own fallback pipelines COPY, STORE and EXPUNGE without waiting for COPY's answer,
// so a refused COPY (NO [TRYCREATE]) still expunged the messages: mail lost.
func (c *Conn) Move(ctx context.Context, uids []uint32, folder string) (Outcome, error) {
	folder, err := c.ServerFolder(ctx, folder)
	if err != nil {
		return Outcome{}, err
	}
	caps := c.c.Caps()
	if caps.Has(imap.CapMove) || caps.Has(imap.CapIMAP4rev2) {
		err := c.createAndRetry(ctx, folder, func() error {
			return c.guard(ctx, 0, "UID MOVE", func() error {
				_, err := c.c.Move(uidSet(uids), folder).Wait()
				return err
			})
		})
		return Outcome{}, err
	}
	err = c.createAndRetry(ctx, folder, func() error {
		return c.guard(ctx, 0, "UID COPY", func() error {
			_, err := c.c.Copy(uidSet(uids), folder).Wait()
			return err
		})
	})
	if err != nil {
		return Outcome{}, err // nothing was flagged: the messages are where they were
	}
	return c.remove(ctx, uids)
}

// createAndRetry runs op; when the server refuses it with NO (TRYCREATE, or a server that names
// no code), it creates folder and runs op once more.
func (c *Conn) createAndRetry(ctx context.Context, folder string, op func() error) error {
	err := op()
	if !isNo(err) {
		return err
	}
	cerr := c.guard(ctx, 0, "CREATE", func() error { return c.c.Create(folder, nil).Wait() })
	var ce *imap.Error
	if cerr != nil && !(errors.As(cerr, &ce) && ce.Code == imap.ResponseCodeAlreadyExists) {
		if !isNo(cerr) {
			return cerr
		}
		if rerr := op(); rerr != nil {
			return fmt.Errorf("%w (and creating folder %q was refused: %v)", err, folder, cerr)
		}
		return nil
	}
	return op()
}

// Delete removes messages: flagged \Deleted, then UID EXPUNGE of exactly those UIDs. A server
// without UIDPLUS gets no EXPUNGE (Outcome.Kept): a plain EXPUNGE would also erase what other
// clients flagged \Deleted.
func (c *Conn) Delete(ctx context.Context, uids []uint32) (Outcome, error) {
	return c.remove(ctx, uids)
}

func (c *Conn) remove(ctx context.Context, uids []uint32) (Outcome, error) {
	caps := c.c.Caps()
	uidplus := caps.Has(imap.CapUIDPlus) || caps.Has(imap.CapIMAP4rev2)
	flags := []imap.Flag{imap.FlagDeleted}
	if !uidplus {
		flags = append(flags, imap.FlagSeen) // a mail client shows them as read, not as new
	}
	err := c.guard(ctx, 0, "UID STORE +FLAGS (\\Deleted)", func() error {
		return c.c.Store(uidSet(uids), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close()
	})
	if err != nil {
		return Outcome{}, err
	}
	if !uidplus {
		return Outcome{Kept: true}, nil
	}
	return Outcome{}, c.guard(ctx, 0, "UID EXPUNGE", func() error {
		return c.c.UIDExpunge(uidSet(uids)).Close()
	})
}
