// Command mailintake is the command-line client of the mailintake server: manage mailboxes and
// API tokens, list auth providers, follow the message stream, show the cluster's replicas, and
// parse a message offline. It is built on cobra: every command has --help, and
// `mailintake completion bash|zsh|fish|powershell` prints a shell completion script.
//
// Exit codes: 0 success, 1 the operation failed (the server said no), 2 usage error, 3 the server
// cannot be reached or the caller is not authenticated.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailintake/mailintake/client"
)

// app is one run of the CLI: the global flags, the standard streams and the connection.
type app struct {
	g      globals
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	cl     *client.Client
	// started is set when a command begins to run; an error before that is a usage error.
	started bool
}

// main runs the CLI with the process's arguments and streams; Ctrl-C cancels the command.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the CLI with args (without the program name) and returns its exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if a.cl != nil {
		a.cl.Close()
	}
	return a.report(cmd, err, a.started)
}
