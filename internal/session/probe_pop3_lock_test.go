package session_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	mailintakev1 "github.com/mailintake/mailintake/proto/mailintake/v1"
)

// The connection test of a POP3 mailbox whose maildrop another session holds for a moment
// (the mailbox's own first poll, when it was just saved enabled): the login answered [IN-USE]
// is tried again, its step running meanwhile, and the test passes once the lock is released;
// every step is reported once.
func TestPOP3ConnectionTestWaitsForTheLock(t *testing.T) {
	srv := newPOP3(t)
	srv.Add(user, mail(1, "one"))
	h := newHarness(t, nil)

	// Another client logs in and holds the maildrop's lock for 700 ms.
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	expect := func(what string) {
		t.Helper()
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "+OK") {
			t.Fatalf("%s: %q %v", what, line, err)
		}
	}
	expect("greeting")
	c.Write([]byte("USER " + user + "\r\n"))
	expect("USER")
	c.Write([]byte("PASS " + password + "\r\n"))
	expect("PASS")
	if !srv.Locked(user) {
		t.Fatal("the maildrop is not locked")
	}
	released := make(chan time.Time, 1)
	go func() {
		time.Sleep(700 * time.Millisecond)
		c.Write([]byte("QUIT\r\n"))
		r.ReadString('\n')
		released <- time.Now()
	}()

	var reported []mailintakev1.TestStepKind
	resp := h.sup.TestSteps(context.Background(), pop3Definition(srv), map[string]string{"password": password}, func(st *mailintakev1.TestStep) {
		if st.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_RUNNING {
			reported = append(reported, st.GetKind())
		}
	})
	done := time.Now()
	if !resp.GetOk() {
		t.Fatalf("the test failed while the lock was held for a moment: %v", resp)
	}
	if at := <-released; done.Before(at) {
		t.Errorf("the test passed before the lock was released")
	}
	seen := map[mailintakev1.TestStepKind]int{}
	for _, k := range reported {
		seen[k]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("step %v reported %d times: %v", k, n, reported)
		}
	}
	if len(seen) != 6 {
		t.Errorf("steps reported: %v", reported)
	}
}

// A maildrop locked for longer than the test waits: the login fails as a temporary refusal,
// saying what to do, not as a failure of the auth provider.
func TestPOP3ConnectionTestLockedMaildrop(t *testing.T) {
	t.Parallel()
	srv := newPOP3(t)
	h := newHarness(t, nil)
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for _, cmd := range []string{"", "USER " + user, "PASS " + password} {
		if cmd != "" {
			c.Write([]byte(cmd + "\r\n"))
		}
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			t.Fatalf("%q: %q %v", cmd, line, err)
		}
	}
	start := time.Now()
	resp := h.sup.TestSteps(context.Background(), pop3Definition(srv), map[string]string{"password": password}, func(*mailintakev1.TestStep) {})
	var auth *mailintakev1.TestStep
	for _, st := range resp.GetSteps() {
		if st.GetKind() == mailintakev1.TestStepKind_TEST_STEP_KIND_AUTH {
			auth = st
		}
	}
	if resp.GetOk() || auth.GetResult() != mailintakev1.TestStepResult_TEST_STEP_RESULT_FAILED ||
		auth.GetAuthFailure().GetReason() != mailintakev1.AuthFailureReason_AUTH_FAILURE_REASON_TEMPORARY ||
		!strings.Contains(auth.GetAuthFailure().GetMessage(), "IN-USE") || !strings.Contains(auth.GetAuthFailure().GetAction(), "other POP3 clients") {
		t.Errorf("with the maildrop locked throughout: %v", resp)
	}
	if waited := time.Since(start); waited < 10*time.Second {
		t.Errorf("the test gave up after %s", waited)
	}
}
