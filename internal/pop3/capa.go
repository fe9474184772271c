package pop3

import (
	"slices"
	"strings"
)

// Capabilities is what the server announced with CAPA (RFC 2449).
type Capabilities struct {
	// Known is false when the server does not support CAPA (an RFC 1939 server): nothing is
	// known, and USER/PASS, UIDL and TOP are tried anyway.
	Known bool
	caps  map[string][]string // upper-case name → arguments
}

// maxCapaArgs bounds the arguments kept for one capability.
const maxCapaArgs = 64

// parseCapaLine adds one CAPA line: a name, then arguments separated by spaces. An empty line
// is ignored.
func (c *Capabilities) parseCapaLine(line []byte) error {
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return nil
	}
	name := strings.ToUpper(f[0])
	for _, r := range name {
		if r < 0x21 || r > 0x7e {
			return &ProtocolError{Problem: "a capability name with a character outside 0x21-0x7E: " + quote(line)}
		}
	}
	if c.caps == nil {
		c.caps = map[string][]string{}
	}
	args := c.caps[name]
	for _, a := range f[1:] {
		if len(args) >= maxCapaArgs {
			break
		}
		args = append(args, clean([]byte(a)))
	}
	c.caps[name] = args
	return nil
}

// Has reports whether the server announced a capability ("UIDL", "TOP", "STLS", "USER").
func (c Capabilities) Has(name string) bool {
	_, ok := c.caps[strings.ToUpper(name)]
	return ok
}

// Args returns a capability's arguments ("SASL" → "PLAIN", "XOAUTH2").
func (c Capabilities) Args(name string) []string {
	return slices.Clone(c.caps[strings.ToUpper(name)])
}

// SASL returns the SASL mechanisms offered, upper case.
func (c Capabilities) SASL() []string {
	var out []string
	for _, m := range c.caps["SASL"] {
		out = append(out, strings.ToUpper(m))
	}
	return out
}

// SupportsSASL reports whether a SASL mechanism is offered.
func (c Capabilities) SupportsSASL(mech string) bool {
	return slices.Contains(c.SASL(), strings.ToUpper(mech))
}

// Names returns the announced capabilities' names, sorted.
func (c Capabilities) Names() []string {
	var out []string
	for n := range c.caps {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// String lists the capabilities as a connection test shows them: "SASL(PLAIN XOAUTH2) STLS
// TOP UIDL USER", or "no CAPA (an RFC 1939 server)".
func (c Capabilities) String() string {
	if !c.Known {
		return "no CAPA (an RFC 1939 server)"
	}
	var parts []string
	for _, n := range c.Names() {
		switch n {
		case "SASL", "IMPLEMENTATION", "EXPIRE", "LOGIN-DELAY":
			if a := c.caps[n]; len(a) > 0 {
				n += "(" + strings.Join(a, " ") + ")"
			}
		}
		parts = append(parts, n)
	}
	if len(parts) == 0 {
		return "no capabilities"
	}
	return strings.Join(parts, " ")
}
