package parse

import (
	"strings"

	"golang.org/x/net/html"
)

var blockTags = map[string]bool{
	"p": true, "div": true, "br": true, "tr": true, "li": true, "h1": true, "h2": true, "h3": true,
	"h4": true, "h5": true, "h6": true, "table": true, "blockquote": true, "pre": true, "hr": true,
	"ul": true, "ol": true,
}

// HTMLToText renders HTML as readable plain text: text content with line breaks at block
// elements, without scripts and styles.
func HTMLToText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b strings.Builder
	skip := 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			return tidy(b.String())
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch t := string(name); {
			case t == "script" || t == "style" || t == "head":
				skip++
			case blockTags[t]:
				b.WriteString("\n")
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch t := string(name); {
			case t == "script" || t == "style" || t == "head":
				if skip > 0 {
					skip--
				}
			case blockTags[t]:
				b.WriteString("\n")
			}
		case html.TextToken:
			if skip == 0 {
				t := html.UnescapeString(string(z.Raw()))
				if strings.TrimSpace(t) == "" {
					if t != "" {
						b.WriteString(" ")
					}
					continue
				}
				if isSpace(t[0]) {
					b.WriteString(" ")
				}
				b.WriteString(strings.Join(strings.Fields(t), " "))
				if isSpace(t[len(t)-1]) {
					b.WriteString(" ")
				}
			}
		}
	}
}

// tidy trims each line and collapses runs of blank lines.
func tidy(s string) string {
	var out []string
	blank := 0
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			blank++
			if blank > 1 || len(out) == 0 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
