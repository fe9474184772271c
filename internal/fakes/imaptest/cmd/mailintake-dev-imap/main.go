// Command mailintake-dev-imap serves the in-memory IMAP server with many users, for the scale
// benchmark (make bench): users user00000@example.com … with password "pw", each with an empty
// INBOX, plaintext on a loopback address. It prints "ready" when it serves.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailintake/mailintake/internal/fakes/imaptest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7993", "address to serve on")
	users := flag.Int("users", 10000, "number of users")
	flag.Parse()
	s, err := imaptest.Listen(*listen, imaptest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for i := range *users {
		if err := s.Add(fmt.Sprintf("user%05d@example.com", i), "pw"); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Stop()
}
