// Command mailintake-dev-imap serves the in-memory IMAP server with many users, for the scale
// benchmark (make bench): users user00000@example.com … with password "pw", each with an empty
// INBOX, plaintext on a loopback address. It prints "ready" when it serves. On standard input it
// takes commands, one a line: "deliver" appends one message to every user's INBOX and prints
// "delivered N"; "deliver I" appends one to user I's only (subject "scale I <n>") and prints
// "delivered 1"; "commands" prints how many IMAP commands clients sent so far ("commands N").
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

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
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		seq := 0
		for sc.Scan() {
			if i, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "deliver ")); err == nil && strings.HasPrefix(sc.Text(), "deliver ") {
				seq++
				u := fmt.Sprintf("user%05d@example.com", i)
				raw := fmt.Sprintf("From: Customer <c@example.net>\r\nTo: %s\r\nSubject: scale %d %d\r\nMessage-ID: <one-%d-%d@example.net>\r\n\r\nHello.\r\n", u, i, seq, i, time.Now().UnixNano())
				if _, err := s.AppendTo(u, "INBOX", []byte(raw)); err != nil {
					log.Fatal(err)
				}
				fmt.Println("delivered 1")
				continue
			}
			switch sc.Text() {
			case "deliver":
				for i := range *users {
					u := fmt.Sprintf("user%05d@example.com", i)
					raw := fmt.Sprintf("From: Customer <c@example.net>\r\nTo: %s\r\nSubject: scale %d\r\nMessage-ID: <scale-%d-%d@example.net>\r\n\r\nHello.\r\n", u, i, i, time.Now().UnixNano())
					if _, err := s.AppendTo(u, "INBOX", []byte(raw)); err != nil {
						log.Fatal(err)
					}
				}
				fmt.Printf("delivered %d\n", *users)
			case "commands":
				fmt.Printf("commands %d\n", s.CommandTotal())
			}
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Stop()
}
