package smtpsend

import (
	"fmt"
	"strings"

	"github.com/emersion/go-message/mail"
	"golang.org/x/net/idna"
)

// parseAddress parses one address ("Name <a@example.com>" or "a@example.com"); field names it in
// the error.
func parseAddress(field, s string) (*mail.Address, error) {
	list, err := parseAddresses(field, []string{s})
	if err != nil {
		return nil, err
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("%s: want one address, got %d in %q", field, len(list), s)
	}
	return list[0], nil
}

// parseAddresses parses a list whose entries may each hold one address or several separated by
// commas.
func parseAddresses(field string, entries []string) ([]*mail.Address, error) {
	var out []*mail.Address
	for i, s := range entries {
		if strings.TrimSpace(s) == "" {
			continue
		}
		if strings.ContainsAny(s, "\r\n") {
			return nil, fmt.Errorf("%s[%d]: an address cannot hold a line break", field, i)
		}
		list, err := mail.ParseAddressList(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %q is not an email address: %v", field, i, s, err)
		}
		for _, a := range list {
			if err := checkEnvelopeAddress(a.Address); err != nil {
				return nil, fmt.Errorf("%s[%d]: the address %v", field, i, err)
			}
		}
		out = append(out, list...)
	}
	return out, nil
}

// domainOf returns an address's domain in ASCII (IDNA), lowercased; "" when it has none.
func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 {
		return ""
	}
	d := strings.ToLower(strings.Trim(addr[at+1:], "[]"))
	if !isASCII(d) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return ""
		}
		d = a
	}
	return d
}

// uniqueAddresses returns the bare addresses, each once (compared without case), in order.
func uniqueAddresses(lists ...[]*mail.Address) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, a := range l {
			k := strings.ToLower(a.Address)
			if !seen[k] {
				seen[k] = true
				out = append(out, a.Address)
			}
		}
	}
	return out
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
