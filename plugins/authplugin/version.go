package authplugin

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the newest version of the auth plugin protocol (authplugin.v1 served
// through go-plugin) this SDK speaks. It is the second field of the handshake line a provider
// prints ("1|1|tcp|…"), go-plugin's "app protocol version".
//
// The protocol version is not the SDK's module version: every SDK release v1.x.y speaks
// protocol version 1, and a change to the protocol that an older host or provider could not
// follow gets a new protocol version, spoken beside the old ones for as long as the SDK's
// README promises (see "Versions" there).
const ProtocolVersion = 1

// ProtocolVersions returns the protocol versions this SDK speaks, oldest first. A provider
// built with it offers them all and go-plugin settles on the newest one its host speaks too; a
// host built with it accepts a provider that speaks any of them.
func ProtocolVersions() []int { return []int{1} }

// versionedPlugins is the plugin set for every protocol version the SDK speaks. impl is nil on
// the host side.
func versionedPlugins(impl Provider) map[int]plugin.PluginSet {
	sets := map[int]plugin.PluginSet{}
	for _, v := range ProtocolVersions() {
		sets[v] = plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
	}
	return sets
}

// ProtocolVersionError is the host's refusal of a provider that speaks no protocol version the
// host speaks.
type ProtocolVersionError struct {
	// Provider is the version the provider's handshake line announced.
	Provider int
	// Host lists the versions the host speaks.
	Host []int
	// Core is set when the mismatch is in go-plugin's core protocol version (the handshake
	// line's first field, always 1), not in the auth plugin protocol.
	Core bool
}

func (e *ProtocolVersionError) Error() string {
	if e.Core {
		return fmt.Sprintf("the provider's handshake line starts with go-plugin core protocol version %d, "+
			"but the server speaks core %s: the line must read 1|%d|tcp|ADDRESS|grpc|CERTIFICATE",
			e.Provider, versions(e.Host), ProtocolVersion)
	}
	if len(e.Host) > 0 && e.Provider < slices.Min(e.Host) {
		return fmt.Sprintf("the provider speaks auth plugin protocol version %d, which this server no longer speaks (it speaks %s): "+
			"rebuild the provider with a current SDK (go get %s@latest) or, in another language, implement protocol version %d",
			e.Provider, versions(e.Host), modulePath, slices.Max(e.Host))
	}
	return fmt.Sprintf("the provider speaks auth plugin protocol version %d, but this server speaks %s only: "+
		"build the provider with an SDK release that speaks %s (every %s v1.x.y release does), "+
		"or upgrade mailintake to a release that speaks version %d",
		e.Provider, versions(e.Host), versions(e.Host), modulePath, e.Provider)
}

const modulePath = "github.com/mailintake/mailintake/plugins/authplugin"

// versions says "version 1" or "versions 1 and 2".
func versions(vs []int) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(v)
	}
	switch len(s) {
	case 0:
		return "no version"
	case 1:
		return "version " + s[0]
	}
	return "versions " + strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// go-plugin's own words for a version mismatch (client.go): they carry the numbers but not what
// to do, and name neither mailintake nor its SDK.
var (
	appVersionMismatch  = regexp.MustCompile(`(?i)incompatible API version with plugin\. Plugin version: (-?\d+)`)
	coreVersionMismatch = regexp.MustCompile(`(?i)incompatible core API version with plugin\. Plugin version: (-?\d+)`)
)

// explainStartError turns go-plugin's start errors that a provider author cannot act on into
// ones that say what to do; other errors are returned unchanged.
func explainStartError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if m := coreVersionMismatch.FindStringSubmatch(msg); m != nil {
		v, _ := strconv.Atoi(m[1])
		return &ProtocolVersionError{Provider: v, Host: []int{plugin.CoreProtocolVersion}, Core: true}
	}
	if m := appVersionMismatch.FindStringSubmatch(msg); m != nil {
		v, _ := strconv.Atoi(m[1])
		return &ProtocolVersionError{Provider: v, Host: ProtocolVersions()}
	}
	return err
}
