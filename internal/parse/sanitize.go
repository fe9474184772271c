package parse

import (
	"net/url"
	"strings"

	"github.com/microcosm-cc/bluemonday"
)

// htmlPolicy makes mail HTML safe to display in a PSA's ticket view: bluemonday's user-generated
// content policy (no scripts, event handlers, forms, frames or style sheets), plus the attributes
// mail layout needs, and no remote content that loads by itself: images keep only cid: (inline
// parts) and data: sources, so tracking pixels and remote images do not load.
var htmlPolicy = func() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.AllowURLSchemes("http", "https", "mailto", "cid", "data")
	p.AllowAttrs("align", "valign", "bgcolor", "color", "width", "height", "border", "cellpadding", "cellspacing").Globally()
	p.AllowElements("font", "center")
	p.AllowAttrs("face", "size").OnElements("font")
	p.RequireNoFollowOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.RewriteSrc(func(u *url.URL) {
		if u.Scheme != "cid" && !(u.Scheme == "data" && strings.HasPrefix(u.Opaque, "image/")) {
			*u = url.URL{}
		}
	})
	return p
}()

// SanitizeHTML returns html safe to display.
func SanitizeHTML(html string) string {
	return htmlPolicy.Sanitize(html)
}
