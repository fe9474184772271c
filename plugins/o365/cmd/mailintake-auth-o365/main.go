// Command mailintake-auth-o365 is the Microsoft 365 OAuth 2.0 auth provider plugin. The
// mailintake server starts it; it is not meant to be run by hand.
package main

import (
	"github.com/mailintake/mailintake/plugins/authplugin"
	"github.com/mailintake/mailintake/plugins/o365"
)

func main() {
	authplugin.Serve(o365.Provider{})
}
