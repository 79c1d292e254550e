package sops

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/plugin"
	"golang.org/x/crypto/ssh"
	yaml "gopkg.in/yaml.v3"
)

const secretRegex = "^(data|stringData)$"

// newKey makes an age identity and its recipient for a test.
func newKey(t *testing.T) ([]age.Identity, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return []age.Identity{id}, id.Recipient().String()
}

func TestRoundTrip(t *testing.T) {
	ids1, rec1 := newKey(t)
	ids2, rec2 := newKey(t)
	rules := map[string]Rules{
		"default":            {},
		"encrypted regex":    {EncryptedRegex: secretRegex},
		"mac only encrypted": {EncryptedRegex: secretRegex, MACOnlyEncrypted: true},
		"unencrypted regex":  {UnencryptedRegex: "^(apiVersion|kind|metadata)$"},
		"encrypted suffix":   {EncryptedSuffix: "Data"},
		"unencrypted suffix": {UnencryptedSuffix: "name"},
	}
	for _, f := range fixtures {
		for name, r := range rules {
			t.Run(f.plain+"/"+name, func(t *testing.T) {
				plain := readFile(t, f.plain)
				enc, err := Encrypt(f.format(), plain, []string{rec1, rec2}, r)
				if err != nil {
					t.Fatal(err)
				}
				for _, ids := range [][]age.Identity{ids1, ids2} {
					out, err := Decrypt(f.format(), enc, ids)
					if err != nil {
						t.Fatalf("%v\n%s", err, enc)
					}
					if got, want := parsed(t, f.format(), out), parsed(t, f.format(), plain); !reflect.DeepEqual(got, want) {
						t.Fatalf("round trip gave\n%s", out)
					}
				}
			})
		}
	}
}

// The layout Encrypt writes is the one sops wrote for the same plain text
// and settings, ciphertexts aside: same order, quoting, indentation,
// comments and metadata.
func TestEncryptLayoutIsSops(t *testing.T) {
	ciphertext := regexp.MustCompile(`ENC\[AES256_GCM,[^\]]*\]|-----BEGIN AGE ENCRYPTED FILE-----[^-]*-----END AGE ENCRYPTED FILE-----(\\n)?|"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"`)
	mask := func(b []byte) string { return ciphertext.ReplaceAllString(string(b), "X") }
	for _, f := range fixtures {
		if f.enc == "secret.enc.json" {
			continue // written unindented by Capstan's former code, not by the sops CLI
		}
		t.Run(f.enc, func(t *testing.T) {
			want := readFile(t, f.enc)
			docs, err := f.format().load(want)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := docs[0].lookup(metadataKey)
			md, err := parseMetadata(raw)
			if err != nil {
				t.Fatal(err)
			}
			var recipients []string
			for _, k := range md.age {
				recipients = append(recipients, k.recipient)
			}
			got, err := Encrypt(f.format(), readFile(t, f.plain), recipients, md.rules)
			if err != nil {
				t.Fatal(err)
			}
			if mask(got) != mask(want) {
				t.Errorf("Encrypt wrote\n%s\nsops wrote\n%s", mask(got), mask(want))
			}
			if strings.Count(mask(got), "X") < 3 {
				t.Errorf("nothing masked: the comparison proves nothing\n%s", got)
			}
		})
	}
}

// What `capstan secret encrypt` writes: apiVersion, kind and metadata
// plain, only ciphertext under data and stringData, the sops mapping last.
func TestEncryptSecretShape(t *testing.T) {
	ids, rec := newKey(t)
	plain := readFile(t, "secret.plain.yaml")
	enc, err := Encrypt(YAML, plain, []string{rec}, Rules{EncryptedRegex: secretRegex})
	if err != nil {
		t.Fatal(err)
	}
	var in, out map[string]any
	if err := yaml.Unmarshal(plain, &in); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(enc, &out); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"apiVersion", "kind", "metadata", "type"} {
		if !reflect.DeepEqual(in[k], out[k]) {
			t.Errorf("%s: %v, want it plain: %v", k, out[k], in[k])
		}
	}
	isENC := regexp.MustCompile(`^ENC\[AES256_GCM,data:[A-Za-z0-9+/=]+,iv:[A-Za-z0-9+/=]{44},tag:[A-Za-z0-9+/=]{24},type:str\]$`)
	n := 0
	for _, field := range []string{"data", "stringData"} {
		values, _ := out[field].(map[string]any)
		if len(values) != len(in[field].(map[string]any)) {
			t.Errorf("%s: %d values, want %d", field, len(values), len(in[field].(map[string]any)))
		}
		for k, v := range values {
			s, _ := v.(string)
			if s == "" && in[field].(map[string]any)[k] == "" {
				continue // sops leaves empty values empty
			}
			if !isENC.MatchString(s) {
				t.Errorf("%s.%s = %v, want ciphertext", field, k, v)
			}
			n++
		}
	}
	if n < 6 {
		t.Errorf("only %d ciphertexts", n)
	}
	for _, leak := range []string{"hunter2-plain", "c2VjcmV0LXRva2Vu", "Grüße", "db.shop.svc", "base64 of"} {
		if strings.Contains(string(enc), leak) {
			t.Errorf("encrypted manifest holds %q", leak)
		}
	}
	md, _ := out["sops"].(map[string]any)
	ages, _ := md["age"].([]any)
	if len(ages) != 1 || ages[0].(map[string]any)["recipient"] != rec || md["encrypted_regex"] != secretRegex || md["version"] != sopsVersion || md["lastmodified"] == nil || md["mac"] == nil {
		t.Errorf("sops metadata %v", md)
	}
	if !strings.HasPrefix(string(enc), "# The shop's database credentials") || !strings.Contains(string(enc), "app: shop # kept plain") {
		t.Errorf("plain comments lost:\n%s", enc)
	}
	if _, err := Decrypt(YAML, enc, ids); err != nil {
		t.Fatal(err)
	}
}

func TestEncryptRefuses(t *testing.T) {
	_, rec := newKey(t)
	for name, c := range map[string]struct {
		plain      string
		recipients []string
		rules      Rules
		want       string
	}{
		"no recipient":      {"a: b\n", nil, Rules{}, "no age recipient"},
		"bad recipient":     {"a: b\n", []string{"age1nope"}, Rules{}, `age recipient "age1nope"`},
		"unknown recipient": {"a: b\n", []string{"pgp:ABCD"}, Rules{}, "unknown recipient type"},
		"already encrypted": {"a: b\nsops:\n    version: 3.13.3\n", []string{rec}, Rules{}, "already encrypted"},
		"empty":             {"", []string{rec}, Rules{}, "empty"},
		"two rules":         {"a: b\n", []string{rec}, Rules{EncryptedRegex: "a", EncryptedSuffix: "b"}, "more than one"},
		"bad regex":         {"a: b\n", []string{rec}, Rules{EncryptedRegex: "("}, "encrypted_regex"},
		"big integer":       {"a: 18446744073709551615\n", []string{rec}, Rules{}, "not supported"},
		"missing plugin":    {"a: b\n", []string{plugin.EncodeRecipient("capstantest", []byte{1})}, Rules{}, "capstantest"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Encrypt(YAML, []byte(c.plain), c.recipients, c.rules)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// Several documents in one YAML stream share the data key and the MAC,
// each carrying the sops mapping, as sops writes them.
func TestMultiDocument(t *testing.T) {
	ids, rec := newKey(t)
	plain := "a: one\n---\nb: two\n"
	enc, err := Encrypt(YAML, []byte(plain), []string{rec}, Rules{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(enc), "\nsops:\n") != 2 {
		t.Fatalf("want the sops mapping in both documents:\n%s", enc)
	}
	out, err := Decrypt(YAML, enc, ids)
	if err != nil || string(out) != "a: one\n---\nb: two\n" {
		t.Fatalf("%v\n%s", err, out)
	}
	// Dropping the second document changes the MAC.
	first, _, _ := strings.Cut(string(enc), "\n---\n")
	if _, err := Decrypt(YAML, []byte(first), ids); err != ErrMACMismatch {
		t.Errorf("first document alone: %v", err)
	}
}

func TestParseIdentities(t *testing.T) {
	x, _ := age.GenerateX25519Identity()
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := ParseIdentities("# created: today\n\n" + x.String() + "\n# public key: x\n" + pq.String() + "\n" + plugin.EncodeIdentity("capstantest", []byte{1}) + "\n")
	if err != nil || len(ids) != 3 {
		t.Fatalf("%d identities, %v", len(ids), err)
	}
	if _, ok := ids[2].(*plugin.Identity); !ok {
		t.Errorf("third identity %T, want a plugin's", ids[2])
	}
	ids, err = ParseIdentities("# no key\n")
	if err != nil || len(ids) != 0 {
		t.Errorf("comments only: %d, %v", len(ids), err)
	}
	// Errors name the line, never its text: it may be a key.
	broken := strings.Replace(x.String(), "AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1Q", 1)
	for _, text := range []string{"\n" + broken + "\n", "\n  " + x.String() + "\n"} {
		_, err := ParseIdentities(text)
		if err == nil || !strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), x.String()[20:]) {
			t.Errorf("got %v, want an error at line 2 without the key", err)
		}
	}
}

// Each kind of recipient opens with its identity: post-quantum hybrid, and
// SSH keys (age's ssh-ed25519 recipients).
func TestRecipientKinds(t *testing.T) {
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sshID, err := agessh.NewEd25519Identity(priv)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		recipient string
		id        age.Identity
	}{
		"hybrid": {pq.Recipient().String(), pq},
		"ssh":    {strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))), sshID},
	} {
		t.Run(name, func(t *testing.T) {
			enc, err := Encrypt(YAML, []byte("stringData:\n    k: v\n"), []string{c.recipient}, Rules{EncryptedRegex: secretRegex})
			if err != nil {
				t.Fatal(err)
			}
			out, err := Decrypt(YAML, enc, []age.Identity{c.id})
			if err != nil || string(out) != "stringData:\n    k: v\n" {
				t.Fatalf("%v\n%s", err, out)
			}
			other, _ := newKey(t)
			if _, err := Decrypt(YAML, enc, other); !errors.As(err, new(*NoKeyError)) {
				t.Errorf("another key: %v", err)
			}
		})
	}
}

func TestRules(t *testing.T) {
	for _, c := range []struct {
		rules Rules
		path  []string
		want  bool
	}{
		{Rules{}, []string{"a", "b"}, true},
		{Rules{}, []string{"a_unencrypted", "b"}, false},
		{Rules{}, nil, true}, // a top-level comment
		{Rules{EncryptedRegex: secretRegex}, []string{"data", "x"}, true},
		{Rules{EncryptedRegex: secretRegex}, []string{"metadata", "data"}, true},
		{Rules{EncryptedRegex: secretRegex}, []string{"metadata", "name"}, false},
		{Rules{EncryptedRegex: secretRegex}, nil, false},
		{Rules{UnencryptedRegex: "^kind$"}, []string{"kind"}, false},
		{Rules{UnencryptedRegex: "^kind$"}, []string{"kinds"}, true},
		{Rules{EncryptedSuffix: "_secret"}, []string{"a_secret", "b"}, true},
		{Rules{EncryptedSuffix: "_secret"}, []string{"a", "b"}, false},
		{Rules{UnencryptedSuffix: "_plain"}, []string{"a", "b_plain"}, false},
	} {
		c2, err := c.rules.compile()
		if err != nil {
			t.Fatal(err)
		}
		if got := c2.encrypts(c.path); got != c.want {
			t.Errorf("%+v encrypts %v: %v, want %v", c.rules, c.path, got, c.want)
		}
	}
}

func TestValues(t *testing.T) {
	key := make([]byte, dataKeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	ad := additionalData([]string{"stringData", "password"})
	if ad != "stringData:password:" {
		t.Fatalf("additional data %q", ad)
	}
	for _, v := range []any{"plain ünïcode\nline", 42, -7, 1.5, true, false, &comment{text: " a comment"}} {
		s, err := seal(key, v, ad)
		if err != nil {
			t.Fatal(err)
		}
		got, err := open(key, s, ad)
		if err != nil || !reflect.DeepEqual(got, v) {
			t.Errorf("%#v: got %#v, %v", v, got, err)
		}
		if _, err := open(key, s, "other:"); err != errAuth {
			t.Errorf("%#v under another path: %v", v, err)
		}
	}
	if s, err := seal(key, "", ad); s != "" || err != nil {
		t.Errorf("empty string sealed to %q, %v", s, err)
	}
	// The type is not authenticated: a wrong one is refused without
	// quoting the plain text.
	s, _ := seal(key, "not-a-number", ad)
	if _, err := open(key, strings.Replace(s, "type:str", "type:int", 1), ad); err == nil || strings.Contains(err.Error(), "not-a-number") {
		t.Errorf("wrong type: %v", err)
	}
	for _, bad := range []string{"ENC[AES256_GCM,data:x]", "ENC[AES256_GCM,data:!!,iv:AA==,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]", "ENC[AES256_GCM,data:AA==,iv:,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]", "ENC[AES256_GCM,iv:AA==,data:AA==,tag:AA==,type:str]", "plain text"} {
		if _, err := open(key, bad, ad); err == nil || errors.Is(err, errAuth) || strings.Contains(err.Error(), "plain text") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// A plain value yaml.v3 cannot read as its tag is not quoted back: it may
// be the secret being encrypted.
func TestEncryptErrorQuotesNoValue(t *testing.T) {
	_, rec := newKey(t)
	_, err := Encrypt(YAML, []byte("stringData:\n    password: !!int hunter2-plain\n"), []string{rec}, Rules{})
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "!!int") {
		t.Fatalf("got %v", err)
	}
}
