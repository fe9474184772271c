// Command mailintake-auth-basic is the username + password auth provider plugin. The mailintake
// server starts it; it is not meant to be run by hand.
package main

import (
	"github.com/mailintake/mailintake/plugins/authplugin"
	"github.com/mailintake/mailintake/plugins/basic"
)

func main() {
	authplugin.Serve(basic.Provider{})
}
