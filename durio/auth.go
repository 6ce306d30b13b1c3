package durio

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/twitchtv/twirp"
)

// requireToken answers 401 with a Twirp error body to any request that does
// not carry "Authorization: Bearer <token>". An empty token lets everything
// through.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			writeError(w, twirp.NewError(twirp.Unauthenticated, "missing or wrong peer token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerTransport adds the peer token to every request it carries.
type bearerTransport struct {
	base  http.RoundTripper
	token string
}

func (t bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(t.token))
	return t.base.RoundTrip(r)
}

// withToken returns client, or a copy that carries the token.
func withToken(client *http.Client, token string) *http.Client {
	if token == "" {
		return client
	}
	c := *client
	c.Transport = bearerTransport{base: client.Transport, token: token}
	return &c
}
