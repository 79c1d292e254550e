package sops

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"
	yaml "gopkg.in/yaml.v3"
)

// The fixtures of testdata were encrypted by the sops library itself
// (testdata/README.md): decrypting them proves this package reads what
// real sops writes, with its MAC rules.

type fixture struct {
	enc, plain string
	keys       []string // the key files that open it
}

func (f fixture) format() Format {
	if filepath.Ext(f.enc) == ".json" {
		return JSON
	}
	return YAML
}

var fixtures = []fixture{
	{"secret.enc.yaml", "secret.plain.yaml", []string{"age.key"}},
	{"secret.enc.json", "secret.plain.json", []string{"age.key"}},
	{"secret-cli.enc.json", "secret.plain.json", []string{"age.key"}},
	{"two-recipients.enc.yaml", "two-recipients.plain.yaml", []string{"age.key", "age2.key"}},
	{"default.enc.yaml", "default.plain.yaml", []string{"age.key"}},
	{"types.enc.yaml", "types.plain.yaml", []string{"age.key"}},
	{"types.enc.json", "types.plain.json", []string{"age.key"}},
	{"mac-only-encrypted.enc.yaml", "mac-only-encrypted.plain.yaml", []string{"age.key"}},
	{"suffix.enc.yaml", "suffix.plain.yaml", []string{"age.key"}},
	{"unencrypted-regex.enc.yaml", "unencrypted-regex.plain.yaml", []string{"age.key"}},
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func identities(t *testing.T, keyFile string) []age.Identity {
	t.Helper()
	ids, err := ParseIdentities(string(readFile(t, keyFile)))
	if err != nil || len(ids) != 1 {
		t.Fatalf("%s: %d identities, %v", keyFile, len(ids), err)
	}
	return ids
}

// recipientOf is the recipient a test key file names in its comment.
func recipientOf(t *testing.T, keyFile string) string {
	t.Helper()
	for _, l := range strings.Split(string(readFile(t, keyFile)), "\n") {
		if r, ok := strings.CutPrefix(l, "# public key: "); ok {
			return r
		}
	}
	t.Fatalf("%s names no public key", keyFile)
	return ""
}

// parsed is a document's data, comments and layout aside.
func parsed(t *testing.T, format Format, doc []byte) []any {
	t.Helper()
	var docs []any
	if format == JSON {
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		return append(docs, v)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(doc)))
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			if err.Error() == "EOF" {
				return docs
			}
			t.Fatalf("%v\n%s", err, doc)
		}
		docs = append(docs, v)
	}
}

func TestDecryptFixtures(t *testing.T) {
	for _, f := range fixtures {
		for _, key := range f.keys {
			t.Run(f.enc+"/"+key, func(t *testing.T) {
				out, err := Decrypt(f.format(), readFile(t, f.enc), identities(t, key))
				if err != nil {
					t.Fatal(err)
				}
				// The data is the plain document's...
				if got, want := parsed(t, f.format(), out), parsed(t, f.format(), readFile(t, f.plain)); !reflect.DeepEqual(got, want) {
					t.Errorf("decrypted\n%#v\nwant\n%#v", got, want)
				}
				// ...and the text, comments included, what `sops -d` printed.
				if want := readFile(t, strings.Replace(f.enc, ".enc.", ".dec.", 1)); string(out) != string(want) {
					t.Errorf("output\n%s\ndiffers from what sops printed\n%s", out, want)
				}
			})
		}
	}
}

func TestDecryptedCommentsAndTypes(t *testing.T) {
	out, err := Decrypt(YAML, readFile(t, "types.enc.yaml"), identities(t, "age.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Every kind of value sops knows", "# a comment inside a mapping", "# a comment inside a list", "replicas: 3\n", "ratio: 1.5\n", "enabled: true\n", "stamp: 2024-01-02T03:04:05.123456789Z\n", "quoted_number: \"42\"\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("decrypted types lack %q:\n%s", want, out)
		}
	}
	enc := string(readFile(t, "types.enc.yaml"))
	if !strings.Contains(enc, "type:comment]") || !strings.Contains(enc, "password_unencrypted: visible") {
		t.Fatal("the fixture is not what this test expects: encrypted comments, one plain value")
	}
}

// tamper returns doc with old replaced by new, failing when old is absent.
func tamper(t *testing.T, doc, old, new string) []byte {
	t.Helper()
	if !strings.Contains(doc, old) {
		t.Fatalf("fixture lacks %q", old)
	}
	return []byte(strings.Replace(doc, old, new, 1))
}

// encValue is the ENC[...] text of key in a YAML fixture.
func encValue(t *testing.T, doc, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `: (ENC\[[^\]]*\])$`).FindStringSubmatch(doc)
	if m == nil {
		t.Fatalf("no encrypted %s in fixture", key)
	}
	return m[1]
}

// flipData changes the first byte of an ENC value's ciphertext.
func flipData(enc string) string {
	i := strings.Index(enc, "data:") + len("data:")
	c := byte('A')
	if enc[i] == 'A' {
		c = 'B'
	}
	return enc[:i] + string(c) + enc[i+1:]
}

func TestTamperedFixturesRefused(t *testing.T) {
	doc := string(readFile(t, "secret.enc.yaml"))
	ids := identities(t, "age.key")
	password, greeting := encValue(t, doc, "password"), encValue(t, doc, "greeting")
	lines := strings.Split(doc, "\n")
	var pwLine, grLine int
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "    password: "):
			pwLine = i
		case strings.HasPrefix(l, "    greeting: "):
			grLine = i
		}
	}
	reordered := append([]string(nil), lines...)
	reordered[pwLine], reordered[grLine] = lines[grLine], lines[pwLine]
	macField := regexp.MustCompile(`mac: ENC\[AES256_GCM,data:(.)`)

	cases := []struct {
		name string
		doc  []byte
		// exact: refused by the MAC itself (every value still
		// authenticates); else by the value's own tag.
		exact bool
	}{
		{"ciphertext altered", tamper(t, doc, password, flipData(password)), false},
		{"two values swapped", []byte(strings.NewReplacer(password, greeting, greeting, password).Replace(doc)), false},
		{"two entries reordered", []byte(strings.Join(reordered, "\n")), true},
		{"plain value altered", tamper(t, doc, "app: shop", "app: shoq"), true},
		{"value removed", tamper(t, doc, "    folded: "+encValue(t, doc, "folded")+"\n", ""), true},
		{"empty value filled", tamper(t, doc, `empty: ""`, "empty: "+password), false},
		{"value copied to a new key", tamper(t, doc, "stringData:\n", "stringData:\n    stolen: "+password+"\n"), false},
		{"lastmodified altered", []byte(regexp.MustCompile(`lastmodified: "(\d{4})`).ReplaceAllString(doc, `lastmodified: "1999`)), true},
		{"MAC altered", []byte(macField.ReplaceAllStringFunc(doc, func(s string) string {
			if strings.HasSuffix(s, "A") {
				return s[:len(s)-1] + "B"
			}
			return s[:len(s)-1] + "A"
		})), true},
	}
	plainTexts := []string{"hunter2-plain", "Grüße", "secret-token", "host = db.shop.svc", "one long line"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if string(c.doc) == doc {
				t.Fatal("the document was not changed")
			}
			_, err := Decrypt(YAML, c.doc, ids)
			if !errors.Is(err, ErrMACMismatch) {
				t.Fatalf("got %v, want the MAC mismatch", err)
			}
			if c.exact && err != ErrMACMismatch {
				t.Errorf("got %v, want the MAC itself to refuse", err)
			}
			for _, p := range plainTexts {
				if strings.Contains(err.Error(), p) {
					t.Errorf("error quotes plain text: %v", err)
				}
			}
		})
	}
}

func TestTamperedJSONRefused(t *testing.T) {
	doc := string(readFile(t, "secret-cli.enc.json"))
	k := regexp.MustCompile(`"k": "(ENC\[[^"]*)"`).FindStringSubmatch(doc)
	multi := regexp.MustCompile(`"multi": "(ENC\[[^"]*)"`).FindStringSubmatch(doc)
	if k == nil || multi == nil {
		t.Fatal("fixture layout")
	}
	swapped := strings.NewReplacer(k[1], multi[1], multi[1], k[1]).Replace(doc)
	if _, err := Decrypt(JSON, []byte(swapped), identities(t, "age.key")); !errors.Is(err, ErrMACMismatch) {
		t.Errorf("swapped values: got %v", err)
	}
	if _, err := Decrypt(JSON, tamper(t, doc, `"app": "shop"`, `"app": "shoq"`), identities(t, "age.key")); err != ErrMACMismatch {
		t.Errorf("plain value altered: got %v", err)
	}
}

// With mac_only_encrypted, as sops defines it, plain values are outside
// the MAC and may change; encrypted ones may not.
func TestMACOnlyEncryptedFixture(t *testing.T) {
	doc := string(readFile(t, "mac-only-encrypted.enc.yaml"))
	ids := identities(t, "age.key")
	out, err := Decrypt(YAML, tamper(t, doc, "tier: backend", "tier: frontend"), ids)
	if err != nil || !strings.Contains(string(out), "tier: frontend") {
		t.Fatalf("plain value edited: %v\n%s", err, out)
	}
	if _, err := Decrypt(YAML, tamper(t, doc, "mac_only_encrypted: true", "mac_only_encrypted: false"), ids); err != ErrMACMismatch {
		t.Errorf("mac_only_encrypted turned off: got %v", err)
	}
	pw := encValue(t, doc, "password")
	if _, err := Decrypt(YAML, tamper(t, doc, "    password: "+pw+"\n", ""), ids); err != ErrMACMismatch {
		t.Errorf("encrypted value removed: got %v", err)
	}
}

func TestFixtureWrongKey(t *testing.T) {
	other, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decrypt(YAML, readFile(t, "two-recipients.enc.yaml"), []age.Identity{other})
	var nk *NoKeyError
	if !errors.As(err, &nk) || len(nk.Recipients) != 2 {
		t.Fatalf("got %v", err)
	}
	for _, key := range []string{"age.key", "age2.key"} {
		if !strings.Contains(err.Error(), recipientOf(t, key)) {
			t.Errorf("%v does not name %s's recipient", err, key)
		}
	}
	// Only keys of other services: there is no age recipient to name.
	doc := tamper(t, string(readFile(t, "secret.enc.yaml")), "    age:\n", "    pgp:\n")
	if _, err := Decrypt(YAML, doc, identities(t, "age.key")); !errors.As(err, &nk) || !strings.Contains(err.Error(), "none of age") {
		t.Errorf("no age key: got %v", err)
	}
}

// Features of sops this package does not implement are refused by name,
// not misread.
func TestUnsupportedMetadata(t *testing.T) {
	doc := string(readFile(t, "secret.enc.yaml"))
	ids := identities(t, "age.key")
	for name, c := range map[string]struct {
		doc  []byte
		want string
	}{
		"comment regex":  {tamper(t, doc, "    version:", "    encrypted_comment_regex: sops:enc\n    version:"), "not supported"},
		"two rules":      {tamper(t, doc, "    version:", "    unencrypted_suffix: _plain\n    version:"), "more than one"},
		"shamir":         {tamper(t, doc, "    version:", "    key_groups:\n        - age: []\n        - age: []\n    version:"), "Shamir"},
		"no sops key":    {tamper(t, doc, "sops:\n", "notsops:\n"), "sops metadata not found"},
		"bad timestamp":  {[]byte(regexp.MustCompile(`lastmodified: "[^"]*"`).ReplaceAllString(doc, `lastmodified: "yesterday"`)), "lastmodified"},
		"bad regex":      {tamper(t, doc, "encrypted_regex: ^(data|stringData)$", "encrypted_regex: ^(data"), "encrypted_regex"},
		"sequence doc":   {[]byte("- a\n- b\n"), "not a sequence"},
		"duplicate key":  {tamper(t, doc, "kind: Secret\n", "kind: Secret\nkind: Secret\n"), "already defined"},
		"non-string key": {tamper(t, doc, "kind: Secret\n", "kind: Secret\n7: seven\n"), "string keys only"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decrypt(YAML, c.doc, ids)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
	jsonDoc := string(readFile(t, "secret-cli.enc.json"))
	if _, err := Decrypt(JSON, tamper(t, jsonDoc, `"kind": "Secret",`, `"kind": "Secret", "kind": "Secret",`), ids); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("JSON duplicate key: %v", err)
	}
	if _, err := Decrypt(JSON, []byte(`["a"]`), ids); err == nil || !strings.Contains(err.Error(), "object") {
		t.Errorf("JSON array: %v", err)
	}
	if _, err := Decrypt(Format("toml"), []byte(doc), ids); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("unknown format: %v", err)
	}
}
