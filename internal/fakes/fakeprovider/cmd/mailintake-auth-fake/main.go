// Command mailintake-auth-fake serves the fake auth provider for tests.
package main

import (
	"github.com/mailintake/mailintake/internal/fakes/fakeprovider"
	"github.com/mailintake/mailintake/plugins/authplugin"
)

func main() { authplugin.Serve(fakeprovider.Provider{}) }
