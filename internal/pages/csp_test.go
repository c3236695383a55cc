package pages

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The pages' form-action allows this origin and the apps' redirect
// origins (FormActions): a browser applies it to the redirects after a
// form's submission, and a sign-in for an app ends at the app. Nothing
// else loosens.
func TestPagesCSPFormActions(t *testing.T) {
	p := newPages(t)
	p.FormActions = []string{"http://localhost:3000", "com.example.app:"}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "http://app.example/auth/signin", nil)
	r.Header.Set("Accept", "text/html")
	if err := p.Serve(w, r); err != nil {
		t.Fatal(err)
	}
	want := "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' http://localhost:3000 com.example.app:; frame-ancestors 'none'; base-uri 'none'"
	if got := w.Header().Get("Content-Security-Policy"); w.Code != http.StatusOK || got != want {
		t.Fatalf("%d CSP %q, want %q", w.Code, got, want)
	}
}
