package cdp

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestBrowser: a page served on loopback loads, its script runs, typed text and Enter submit
// its form, and the screenshot is a PNG.
func TestBrowser(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>t</title><p id=q>%s</p><form><input name=q id=in></form><script>window.ran = 40 + 2</script>`,
			strings.ReplaceAll(r.URL.Query().Get("q"), "<", "&lt;"))
	}))
	defer srv.Close()
	b := Launch(t)
	p := b.NewPage(t)
	p.Navigate(srv.URL)
	var n int
	p.Eval("window.ran", &n)
	if n != 42 {
		t.Fatalf("script result %d, want 42", n)
	}
	p.Type("#in", "hello <b>", true)
	if got := p.String("document.getElementById('q').textContent"); got != "hello <b>" {
		t.Fatalf("after submit: %q", got)
	}
	if got := p.Strings("[...document.querySelectorAll('input')].map(e => e.name)"); len(got) != 1 || got[0] != "q" {
		t.Fatalf("inputs %q", got)
	}
	png, err := os.ReadFile(p.Screenshot(t.TempDir(), "page"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG: % x", png[:min(8, len(png))])
	}
}
