package webhook

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

// fuzzForges are the ways a fuzzed request authenticates: the endpoint and
// the header carrying the signature or token.
var fuzzForges = []struct {
	path, event, auth string
	hmac              bool   // auth is an HMAC of the body, else the token
	prefix            string // before the hex HMAC or the token
}{
	{"/hooks/github", "X-GitHub-Event", "X-Hub-Signature-256", true, "sha256="},
	{"/hooks/gitlab", "X-Gitlab-Event", "X-Gitlab-Token", false, ""},
	{"/hooks/gitea", "X-Gitea-Event", "X-Gitea-Signature", true, ""},
	{"/hooks/forgejo", "X-Forgejo-Event", "X-Forgejo-Signature", true, ""},
	{"/hooks/generic", "X-Capstan-Event", "Authorization", false, "Bearer "},
	{"/hooks/generic", "X-Capstan-Event", "X-Capstan-Signature", true, "sha256="},
}

// fuzzMaxBody keeps fuzzed bodies under the receiver's limit mostly.
const fuzzMaxBody = 64 << 10

// FuzzWebhook posts a fuzzed delivery to each endpoint, correctly signed or
// with a fuzzed credential. It must not panic; a request whose credential
// does not even hold the body's HMAC (or the token) is refused with 401
// and triggers nothing; a signed one is never refused, but is once its
// body is altered or it is signed with another secret; only a 200
// triggers; the reply never holds the secret.
func FuzzWebhook(f *testing.F) {
	ghBody := fmt.Sprintf(githubPush, "main")
	form := "payload=" + url.QueryEscape(ghBody)
	const js, fe = "application/json", "application/x-www-form-urlencoded"
	for _, s := range []struct {
		forge              uint8
		event, ctype, body string
	}{
		{0, "push", js, ghBody},
		{0, "push", js, fmt.Sprintf(githubPush, "release/1")},
		{0, "push", js, tagPush},
		{0, "push", js, `{"ref":"refs/pull/1/head"}`},
		{0, "ping", js, githubPing},
		{0, "issues", js, githubIssues},
		{0, "push", fe, form},
		{0, "push", js, "{not json"},
		{1, "Push Hook", js, fmt.Sprintf(gitlabPush, "main")},
		{1, "Merge Request Hook", js, `{"object_kind":"merge_request"}`},
		{2, "push", js, fmt.Sprintf(giteaPush, "main")},
		{3, "push", js, fmt.Sprintf(giteaPush, "dev")},
		{4, "", js, ""},
		{4, "", js, `{"branch":"main"}`},
		{4, "", js, `{"source":"release"}`},
		{5, "", js, `{"ref":"refs/heads/release/1"}`},
		{5, "", js, `{"ref":"refs/tags/v1","url":"git@github.com:acme/deploy.git"}`},
		{5, "", fe, "payload=%7B%22branch%22%3A%22x%22%7D"},
	} {
		f.Add(s.forge, s.event, s.ctype, []byte(s.body), "", true)
		f.Add(s.forge, s.event, s.ctype, []byte(s.body), "sha256="+sign("guess", s.body), false)
		f.Add(s.forge, s.event, s.ctype, []byte(s.body), "Bearer "+secret[:5], false)
	}

	f.Fuzz(func(t *testing.T, forge uint8, event, ctype string, body []byte, cred string, signed bool) {
		fg := fuzzForges[int(forge)%len(fuzzForges)]
		mac := sign(secret, string(body))
		if signed {
			cred = fg.prefix + secret
			if fg.hmac {
				cred = fg.prefix + mac
			}
		}
		triggered := 0
		r, err := New(Options{Secret: []byte(secret), MaxBodyBytes: fuzzMaxBody, Targets: fuzzTargets(&triggered)})
		if err != nil {
			t.Fatal(err)
		}
		post := func(body []byte, cred string) int {
			triggered = 0
			req := httptest.NewRequest(http.MethodPost, fg.path, bytes.NewReader(body))
			req.Header.Set(fg.event, event)
			req.Header.Set("Content-Type", ctype)
			req.Header.Set(fg.auth, cred)
			w := httptest.NewRecorder()
			r.Handler().ServeHTTP(w, req)
			switch w.Code {
			case 200, 202, 400, 401:
			case 413:
				if len(body) <= fuzzMaxBody {
					t.Fatalf("413 for %d bytes", len(body))
				}
			default:
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if triggered > 0 && w.Code != 200 {
				t.Fatalf("status %d, yet %d targets triggered", w.Code, triggered)
			}
			if !strings.Contains(string(body)+event, secret) && strings.Contains(w.Body.String(), secret) {
				t.Fatalf("the reply holds the secret: %q", w.Body)
			}
			return w.Code
		}

		// What any accepted credential must contain.
		want := secret
		if fg.hmac {
			want = mac
		}
		code := post(body, cred)
		if !strings.Contains(strings.ToLower(cred), strings.ToLower(want)) && code != 401 {
			t.Fatalf("status %d for a credential without the HMAC or token: %q", code, cred)
		}
		if signed && code == 401 {
			t.Fatalf("a correctly signed request refused")
		}
		if !signed {
			return
		}
		// The same request signed with another secret, or (for an HMAC)
		// with its body changed, is refused.
		other := fg.prefix + secret + "x"
		if fg.hmac {
			other = fg.prefix + sign(secret+"x", string(body))
		}
		if code := post(body, other); code != 401 {
			t.Fatalf("status %d with another secret", code)
		}
		if fg.hmac && len(body) < fuzzMaxBody {
			if code := post(append(bytes.Clone(body), ' '), cred); code != 401 {
				t.Fatalf("status %d for a body other than the one signed", code)
			}
		}
	})
}

// fuzzTargets are targets of every kind, counting triggers into n.
func fuzzTargets(n *int) []Target {
	trigger := func() { *n++ }
	spec := func(url string, ref *manifests.GitRef) manifests.SourceSpec {
		return manifests.SourceSpec{URL: url, Ref: ref}
	}
	const repo = "https://github.com/acme/deploy.git"
	return []Target{
		TargetFor("root", manifests.SourceSpec{URL: repo, Branch: "main"}, trigger),
		TargetFor("release", spec("git@github.com:acme/deploy", &manifests.GitRef{Branch: "release/1"}), trigger),
		TargetFor("default", spec("", nil), trigger),
		TargetFor("tag", spec(repo, &manifests.GitRef{Tag: "v1"}), trigger),
		TargetFor("semver", spec(repo, &manifests.GitRef{SemVer: "~1.0"}), trigger),
		TargetFor("pinned", spec(repo, &manifests.GitRef{Commit: strings.Repeat("a", 40)}), trigger),
		TargetFor("local", spec("/srv/git/ops", nil), trigger),
	}
}
