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
// elements, without scripts and styles, bold text as *bold* (as mail clients write the text
// part of an HTML mail).
func HTMLToText(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b []byte
	skip := 0
	bold, openStar := 0, false // openStar: a "*" waits for the bold element's first text
	for {
		switch z.Next() {
		case html.ErrorToken:
			return tidy(string(b))
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			switch t := string(name); {
			case t == "script" || t == "style" || t == "head":
				skip++
			case blockTags[t]:
				b = append(b, "\n"...)
			case (t == "b" || t == "strong") && skip == 0:
				if bold == 0 {
					openStar = true
				}
				bold++
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			switch t := string(name); {
			case t == "script" || t == "style" || t == "head":
				if skip > 0 {
					skip--
				}
			case blockTags[t]:
				b = append(b, "\n"...)
			case (t == "b" || t == "strong") && bold > 0:
				if bold--; bold == 0 {
					if openStar {
						openStar = false // no text inside
						break
					}
					// "*bold* " rather than "*bold *"
					n := len(b)
					for n > 0 && b[n-1] == ' ' {
						n--
					}
					b = append(append(b[:n], '*'), strings.Repeat(" ", len(b)-n)...)
				}
			}
		case html.TextToken:
			if skip == 0 {
				t := html.UnescapeString(string(z.Raw()))
				if strings.TrimSpace(t) == "" {
					if t != "" {
						b = append(b, " "...)
					}
					continue
				}
				if isSpace(t[0]) {
					b = append(b, " "...)
				}
				if openStar {
					b = append(b, "*"...)
					openStar = false
				}
				b = append(b, strings.Join(strings.Fields(t), " ")...)
				if isSpace(t[len(t)-1]) {
					b = append(b, " "...)
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
