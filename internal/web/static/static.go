// Package static holds the admin web page's files served from the binary: the stylesheet, the
// vendored htmx 2.0.11 (htmx.org's dist/htmx.min.js, 0BSD: htmx.LICENSE.txt), and form.js, the
// mailbox form's protocol-dependent inputs (shown or hidden; the form works without it). Nothing is
// fetched from elsewhere; the page's Content-Security-Policy allows scripts and styles from
// its own origin only.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed htmx.min.js htmx.LICENSE.txt style.css form.js
var files embed.FS

// versions maps a file name to a short hash of its content, for cache-busting URLs.
var versions = func() map[string]string {
	v := map[string]string{}
	entries, _ := fs.ReadDir(files, ".")
	for _, e := range entries {
		b, _ := files.ReadFile(e.Name())
		sum := sha256.Sum256(b)
		v[e.Name()] = hex.EncodeToString(sum[:6])
	}
	return v
}()

// Path returns the URL of a file, with its version: it can be cached for a long time.
func Path(name string) string {
	return "/static/" + name + "?v=" + versions[name]
}

// Handler serves the files under /static/.
func Handler() http.Handler {
	fsrv := http.StripPrefix("/static/", http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/static/")
		v, ok := versions[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.URL.Query().Get("v") == v {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		fsrv.ServeHTTP(w, r)
	})
}
