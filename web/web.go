// Package web holds the browser side of camagent, embedded in the hub's binary: the browser SDK
// (sdk/camagent-rtc.js, the global CamagentRTC), the two pages built on it, the device viewer
// and the two-party quickstart call, and the login and administration pages.
//
// Every page asks GET /api/session first (pages/session.js) and sends a visitor who is not
// logged in to /login; every state-changing request carries a JSON body and the session's
// X-CSRF-Token. The pages hold no inline script or style, so the hub's Content-Security-Policy
// (default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none') admits them.
//
// Handler serves exactly these routes; the hub mounts it for them and serves /api, /rtc,
// /healthz and /metrics itself:
//
//	/                       pages/index.html      the device list and viewer
//	/quickstart             pages/quickstart.html the two-party call page
//	/login                  pages/login.html      log in (POST /api/login)
//	/admin                  pages/admin.html      people, devices and API keys (administrators)
//	/sdk/camagent-rtc.js    sdk/camagent-rtc.js   the browser SDK
//	/static/<file>          pages/<file>          the pages' scripts and styles
//
// Every response carries Cache-Control: no-cache and an ETag, so a browser revalidates (cheaply,
// 304) and never runs an SDK older than the hub it talks to.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed sdk pages
var files embed.FS

// FS is the embedded tree: sdk/camagent-rtc.js and pages/….
var FS fs.FS = files

// Routes lists the paths Handler answers besides /static/…, for the hub's mux.
var Routes = []string{"/", "/quickstart", "/login", "/admin", "/sdk/camagent-rtc.js"}

// StaticPrefix is the path under which Handler serves the pages' assets.
const StaticPrefix = "/static/"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "application/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
}

// Handler serves the SDK and the pages from the embedded files.
func Handler() http.Handler {
	routes := map[string]string{
		"/":                    "pages/index.html",
		"/quickstart":          "pages/quickstart.html",
		"/login":               "pages/login.html",
		"/admin":               "pages/admin.html",
		"/sdk/camagent-rtc.js": "sdk/camagent-rtc.js",
	}
	assets := make(map[string]*asset) // URL path → asset
	add := func(urlPath, name string) {
		body, err := fs.ReadFile(files, name)
		if err != nil {
			return // a renamed page: its route answers 404, which the package's tests catch
		}
		sum := sha256.Sum256(body)
		ct := contentTypes[path.Ext(name)]
		if ct == "" {
			ct = http.DetectContentType(body)
		}
		assets[urlPath] = &asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	for urlPath, name := range routes {
		add(urlPath, name)
	}
	entries, _ := fs.ReadDir(files, "pages")
	for _, e := range entries {
		if !e.IsDir() && !strings.HasSuffix(e.Name(), ".html") {
			add(StaticPrefix+e.Name(), "pages/"+e.Name())
		}
	}

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		// ServeContent answers If-None-Match with 304 and handles HEAD and ranges.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
