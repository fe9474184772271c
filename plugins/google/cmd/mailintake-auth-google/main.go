// Command mailintake-auth-google is the Google Workspace OAuth 2.0 auth provider plugin. The
// mailintake server starts it; it is not meant to be run by hand.
package main

import (
	"github.com/mailintake/mailintake/plugins/authplugin"
	"github.com/mailintake/mailintake/plugins/google"
)

func main() {
	authplugin.Serve(google.New())
}
