package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/mailintake/mailintake/client"
	"github.com/mailintake/mailintake/internal/fakes/imaptest"
	"github.com/mailintake/mailintake/internal/testutil"
	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// TestOffheapBuffersReusedAndGivenBack streams mail with attachments of 40 KB to 700 KB, whose
// bodies and marshalled messages are lent from internal/offheap, through the CLI with
// acknowledgements, with buffers lent again as they are given back (poison mode off, as users
// run it): every message and attachment arrives with the bytes and SHA-256 it was sent with (a
// buffer lent again while still in use would mix two messages), and once all are acknowledged
// no buffer is still lent (one never given back would be memory lost for good) and the free
// ones are kept for reuse, then released when the server is idle.
func TestOffheapBuffersReusedAndGivenBack(t *testing.T) {
	t.Setenv("MAILINTAKE_OFFHEAP_POISON", "0")
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, "help@example.com", "pw-1")
	const total = 30
	rawSum := map[string]string{}  // subject → SHA-256 of the message
	fileSum := map[string]string{} // subject → SHA-256 of its attachment
	for i := range total {
		blob := testutil.RandomBytes(40<<10+i*23<<10, uint64(i))
		var b strings.Builder
		subject := fmt.Sprintf("report %02d", i)
		fmt.Fprintf(&b, "From: a@example.net\r\nTo: help@example.com\r\nSubject: %s\r\nMIME-Version: 1.0\r\n"+
			"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached %d\r\n"+
			"--b\r\nContent-Type: application/octet-stream; name=\"r.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", subject, i)
		b.WriteString(testutil.Base64Lines(blob) + "--b--\r\n")
		raw := []byte(b.String())
		s := sha256.Sum256(raw)
		rawSum[subject] = hex.EncodeToString(s[:])
		s = sha256.Sum256(blob)
		fileSum[subject] = hex.EncodeToString(s[:])
		srv.Append(t, "help@example.com", "INBOX", raw)
	}
	data := t.TempDir()
	metricsAddr := freeAddr(t)
	d := startDaemon(t, data, "--metrics-listen", metricsAddr)
	g := []string{"--addr", d.addr, "--data-dir", data}
	addHelpMailbox(t, g, srv.Port)
	code, out, errs := cli(t, "", append(g, "tail", "--ack", "--limit", strconv.Itoa(total), "--timeout", "30s")...)
	if code != 0 {
		t.Fatalf("tail: exit %d: %s", code, errs)
	}
	got := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var m struct {
			Sha256   string `json:"sha256"`
			Envelope struct {
				Subject string `json:"subject"`
			} `json:"envelope"`
			Attachments []struct {
				Sha256 string `json:"sha256"`
				Data   []byte `json:"data"`
			} `json:"attachments"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("tail printed %.200q: %v", sc.Text(), err)
		}
		subject := m.Envelope.Subject
		got++
		if m.Sha256 != rawSum[subject] {
			t.Errorf("%s: message SHA-256 %s, want %s", subject, m.Sha256, rawSum[subject])
		}
		if len(m.Attachments) != 1 {
			t.Errorf("%s: %d attachments", subject, len(m.Attachments))
			continue
		}
		s := sha256.Sum256(m.Attachments[0].Data)
		if a := m.Attachments[0]; a.Sha256 != fileSum[subject] || hex.EncodeToString(s[:]) != fileSum[subject] {
			t.Errorf("%s: attachment SHA-256 %s, of its data %x, want %s", subject, a.Sha256, s, fileSum[subject])
		}
	}
	if got != total {
		t.Fatalf("%d messages, want %d", got, total)
	}
	gauge := func(name string) float64 { return metricValue(t, metricsAddr, name) }
	// Every message is acknowledged: the bodies were parsed and the messages written.
	deadline := time.Now().Add(5 * time.Second)
	for gauge("mailintake_offheap_buffers_lent") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%v off-heap buffers still lent after every message was acknowledged", gauge("mailintake_offheap_buffers_lent"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := gauge("mailintake_offheap_cached_bytes"); c <= 0 || c > 16<<20 {
		t.Errorf("%v bytes of free off-heap buffers kept, want some and at most 16 MiB", c)
	}
	// At rest they are released.
	deadline = time.Now().Add(20 * time.Second)
	for gauge("mailintake_offheap_cached_bytes") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%v bytes of free off-heap buffers still kept after 20 s at rest", gauge("mailintake_offheap_cached_bytes"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metricValue reads the value of an unlabelled metric from the daemon's /metrics.
func metricValue(t *testing.T, metricsAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("metrics lack %s", name)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestOffheapBuffersOfAVanishedConsumerGivenBack: a consumer stops reading with large messages
// marshalled and queued for it (its flow-control window full), then its connection drops.
// gRPC frees what its transport still holds only while the connection lives, so the buffers
// those messages were marshalled into are never given back by it; they go back once collected
// (offheap.Guard). Without that, every consumer that vanished mid-message would leak its
// queued messages' memory for good.
func TestOffheapBuffersOfAVanishedConsumerGivenBack(t *testing.T) {
	srv := imaptest.Start(t, imaptest.Options{})
	srv.AddUser(t, "help@example.com", "pw-1")
	for i := range 6 {
		blob := testutil.RandomBytes(600<<10, uint64(i))
		srv.Append(t, "help@example.com", "INBOX", []byte(fmt.Sprintf("From: a@example.net\r\nTo: help@example.com\r\nSubject: big %d\r\nMIME-Version: 1.0\r\n"+
			"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"+
			"--b\r\nContent-Type: application/octet-stream; name=\"r.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%s--b--\r\n", i, testutil.Base64Lines(blob))))
	}
	data := t.TempDir()
	metricsAddr := freeAddr(t)
	d := startDaemon(t, data, "--metrics-listen", metricsAddr, "--pprof")
	g := []string{"--addr", d.addr, "--data-dir", data}
	addHelpMailbox(t, g, srv.Port)
	lent := func() float64 { return metricValue(t, metricsAddr, "mailintake_offheap_buffers_lent") }

	// A consumer with a window of 64 KB that never reads: the server marshals messages of about
	// 1.4 MB each for it, and they wait in its transport.
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(d.addr, client.Options{Token: strings.TrimSpace(string(tok)),
		DialOptions: []grpc.DialOption{grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Messages.StreamMessages(context.Background(), &mailintakev1.StreamMessagesRequest{MaxInFlight: 4}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for lent() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%v buffers lent: the messages were not marshalled for the consumer", lent())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the bodies are parsed and given back; the stream's messages wait
	held := lent()
	c.Close()

	// The daemon collects (the profiler's ?gc=1) until the dropped buffers are back.
	deadline = time.Now().Add(15 * time.Second)
	for lent() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%v of the %v buffers queued for a consumer that vanished are still lent after collections", lent(), held)
		}
		resp, err := http.Get("http://" + metricsAddr + "/debug/pprof/heap?gc=1")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
	}
}

// addHelpMailbox adds help@example.com (password pw-1) on the in-process IMAP server at port,
// from all its mail.
func addHelpMailbox(t *testing.T, g []string, port int) {
	t.Helper()
	code, _, errs := cli(t, "pw-1", append(g, "mailbox", "add", "--tenant", "acme", "--name", "Help", "--host", "127.0.0.1",
		"--port", strconv.Itoa(port), "--security", "none", "--username", "help@example.com", "--provider", "basic",
		"--password-stdin", "--start-from", "all")...)
	if code != 0 {
		t.Fatalf("add: %s", errs)
	}
}
