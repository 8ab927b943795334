package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandlerRoutes(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()

	cases := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `src="/sdk/camagent-rtc.js"`},
		{"/quickstart", "text/html; charset=utf-8", `src="/static/quickstart.js"`},
		{"/login", "text/html; charset=utf-8", `src="/static/login.js"`},
		{"/admin", "text/html; charset=utf-8", `src="/static/admin.js"`},
		{"/static/session.js", "application/javascript; charset=utf-8", "/api/session"},
		{"/sdk/camagent-rtc.js", "application/javascript; charset=utf-8", "CamagentRTC"},
		{"/static/viewer.js", "application/javascript; charset=utf-8", "camagentViewer"},
		{"/static/quickstart.js", "application/javascript; charset=utf-8", "createClient"},
		{"/static/style.css", "text/css; charset=utf-8", "{"},
	}
	for _, c := range cases {
		res, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", c.path, res.StatusCode)
			continue
		}
		if got := res.Header.Get("Content-Type"); got != c.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.contentType)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", c.path, got)
		}
		if !strings.Contains(string(body), c.contains) {
			t.Errorf("GET %s: body does not contain %q", c.path, c.contains)
		}
	}
}

// The pages must reference only assets the handler serves.
func TestPageLinksResolve(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, page := range []string{"/", "/quickstart", "/login", "/admin"} {
		res, err := http.Get(srv.URL + page)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		for _, attr := range []string{`src="`, `href="`} {
			rest := string(body)
			for {
				i := strings.Index(rest, attr)
				if i < 0 {
					break
				}
				rest = rest[i+len(attr):]
				link := rest[:strings.IndexByte(rest, '"')]
				if !strings.HasPrefix(link, "/") || strings.HasPrefix(link, "//") {
					continue // anchors and external links are not ours
				}
				r, err := http.Get(srv.URL + link)
				if err != nil {
					t.Fatal(err)
				}
				r.Body.Close()
				if r.StatusCode != http.StatusOK {
					t.Errorf("%s links %s, which answers %d", page, link, r.StatusCode)
				}
			}
		}
	}
}

func TestHandlerNotFoundAndMethods(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, p := range []string{"/index.html", "/static/index.html", "/static/", "/sdk/", "/api/token", "/static/../web.go"} {
		res, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, res.StatusCode)
		}
	}
	res, err := http.Post(srv.URL+"/sdk/camagent-rtc.js", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", res.StatusCode)
	}
}

func TestHandlerRevalidates(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/sdk/camagent-rtc.js")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/sdk/camagent-rtc.js", nil)
	req.Header.Set("If-None-Match", etag)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", res.StatusCode)
	}
}

// The hub sends default-src 'self'; script-src 'self'; style-src 'self': a page with an inline
// script, an event-handler attribute or a style attribute would break under it.
func TestPagesFitTheCSP(t *testing.T) {
	inline := []struct {
		what string
		re   *regexp.Regexp
	}{
		// Every <script> has a src and nothing inside.
		{"an inline script", regexp.MustCompile(`(?i)<script(\s[^>]*)?>[^<]+</script>|<script(\s+(type|defer|async)(="[^"]*")?)*\s*>`)},
		{"an event-handler attribute", regexp.MustCompile(`(?i)<[a-z][^>]*\son[a-z]+\s*=`)},
		{"a style attribute", regexp.MustCompile(`(?i)<[a-z][^>]*\sstyle\s*=`)},
		{"a <style> element", regexp.MustCompile(`(?i)<style[\s>]`)},
		{"a javascript: URL", regexp.MustCompile(`(?i)(href|src|action)\s*=\s*"javascript:`)},
	}
	scripts := []struct {
		what string
		re   *regexp.Regexp
	}{
		{"setAttribute('style')", regexp.MustCompile(`setAttribute\(\s*['"]style['"]`)},
		{"eval or new Function", regexp.MustCompile(`\beval\(|new Function\(`)},
		{"a string timer", regexp.MustCompile(`set(Timeout|Interval)\(\s*['"\x60]`)},
		{"innerHTML with content", regexp.MustCompile(`innerHTML\s*=\s*[^'"\s]|innerHTML\s*=\s*['"][^'"]`)},
	}
	var pages, js int
	err := fs.WalkDir(FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(FS, name)
		if err != nil {
			return err
		}
		checks := scripts
		switch {
		case strings.HasSuffix(name, ".html"):
			checks = inline
			pages++
		case strings.HasSuffix(name, ".js"):
			js++
		default:
			return nil
		}
		for _, c := range checks {
			if m := c.re.Find(body); m != nil {
				t.Errorf("%s has %s, which the hub's CSP refuses: %q", name, c.what, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pages < 4 || js < 5 {
		t.Errorf("checked %d pages and %d scripts: the embedded tree lost files", pages, js)
	}
}

// Every page loads session.js (the login redirect, the CSRF token) before its own script.
func TestPagesLoadTheSession(t *testing.T) {
	for _, name := range []string{"pages/index.html", "pages/quickstart.html", "pages/admin.html"} {
		body, err := fs.ReadFile(FS, name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(body)
		i := strings.Index(s, `src="/static/session.js"`)
		own := strings.LastIndex(s, `<script src="/static/`)
		if i < 0 || i > own {
			t.Errorf("%s does not load /static/session.js before its own script", name)
		}
	}
}
