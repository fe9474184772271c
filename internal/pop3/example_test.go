package pop3_test

import (
	"context"
	"fmt"
	"log"

	"github.com/mailintake/mailintake/internal/fakes/pop3test"
	"github.com/mailintake/mailintake/internal/pop3"
)

// A poll as a session makes it: log in, list unique-ids and sizes, fetch what is new within the
// size limit, mark what was acknowledged, and QUIT, which alone deletes.
func Example() {
	srv, err := pop3test.Listen("127.0.0.1:0", pop3test.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.AddUser("desk@example.com", "secret")
	acked := srv.Add("desk@example.com", []byte("Subject: done\n\nalready delivered\n"))
	srv.Add("desk@example.com", []byte("Subject: new\n\nplease help\n"))

	ctx := context.Background()
	c, err := pop3.Dial(ctx, pop3.Target{Host: srv.Host, Port: srv.Port, Security: pop3.Plaintext, InsecureAuth: true}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // after Quit, a no-op; without it, nothing marked is deleted
	if err := c.Authenticate(ctx, pop3.Credential{Mechanism: pop3.MechPlain, Identity: "desk@example.com", Secret: "secret"}); err != nil {
		log.Fatal(err)
	}
	uids, err := c.UIDL(ctx)
	if err != nil {
		log.Fatal(err)
	}
	list, err := c.List(ctx)
	if err != nil {
		log.Fatal(err)
	}
	size := map[int]int64{} // by message number: LIST and UIDL need not list the same messages
	for _, e := range list {
		size[e.Msg] = e.Size
	}
	const limit = 25 << 20
	for _, e := range uids.Entries {
		switch {
		case e.UID == acked:
			if err := c.Dele(ctx, e.Msg); err != nil {
				log.Fatal(err)
			}
		case size[e.Msg] > limit:
			fmt.Println("quarantine", e.UID, "by its listed size")
		default:
			m, err := c.Retr(ctx, e.Msg, limit)
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("deliver %s: %d bytes\n", e.UID, m.Size)
		}
	}
	deleted, err := c.Quit(ctx)
	fmt.Println("deleted", deleted, err)
	// Output:
	// deliver uid-2: 29 bytes
	// deleted [1] <nil>
}
