package sops

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// macReference is what a fixture's MAC protects: its rules, and the plain
// bytes of the values the MAC covers, in order.
type macReference struct {
	rules   *compiled
	covered []byte
}

// fuzzFixture is a fixture as the fuzz targets use it.
type fuzzFixture struct {
	format Format
	enc    []byte
	ref    macReference
}

// fuzzFixtures reads the fixtures, their key, the MAC references, and the
// plain texts of their encrypted values (at least 8 bytes long).
func fuzzFixtures(f *testing.F) (ids []age.Identity, fxs []fuzzFixture, secrets []string) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	ids, err := ParseIdentities(string(read("age.key")))
	if err != nil {
		f.Fatal(err)
	}
	for _, fx := range fixtures {
		enc := read(fx.enc)
		docs, err := fx.format().load(enc)
		if err != nil {
			f.Fatal(err)
		}
		raw, _ := docs[0].lookup(metadataKey)
		md, err := parseMetadata(raw)
		if err != nil {
			f.Fatal(err)
		}
		rules, err := md.rules.compile()
		if err != nil {
			f.Fatal(err)
		}
		plain, err := fx.format().load(read(fx.plain))
		if err != nil {
			f.Fatal(err)
		}
		ref := macReference{rules, macCovered(rules, plain, nil)}
		// The reference agrees with Decrypt on the untouched fixture.
		out, err := Decrypt(fx.format(), enc, ids)
		if err != nil {
			f.Fatal(err)
		}
		if got, err := fx.format().load(out); err != nil || !bytes.Equal(macCovered(rules, got, nil), ref.covered) {
			f.Fatalf("%s: the MAC reference does not match its decryption (%v)", fx.enc, err)
		}
		fxs = append(fxs, fuzzFixture{fx.format(), enc, ref})
		macCovered(rules, plain, func(path []string, b []byte) {
			if len(b) >= 8 && rules.encrypts(path) {
				secrets = append(secrets, string(b))
			}
		})
	}
	return ids, fxs, secrets
}

// checkDecrypted fails t when Decrypt's answer breaks the properties of
// the fuzz targets: a document that decrypts must read back with the
// values its MAC covers equal to one of refs'; an error must not hold a
// secret the input does not.
func checkDecrypted(t *testing.T, format Format, doc, out []byte, err error, refs []macReference, secrets []string) {
	if err != nil {
		if out != nil {
			t.Fatalf("output with an error: %v", err)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) && !bytes.Contains(doc, []byte(s)) {
				t.Fatalf("error holds plain text %q: %v", s, err)
			}
		}
		return
	}
	docs, err := format.load(out)
	if err != nil {
		t.Fatalf("the decrypted document does not read back: %v\n%s", err, out)
	}
	for _, ref := range refs {
		if bytes.Equal(macCovered(ref.rules, docs, nil), ref.covered) {
			return
		}
	}
	t.Fatalf("a changed document decrypted: its MAC-covered values are no fixture's:\n%s", out)
}

// FuzzDecrypt decrypts fuzzed SOPS documents, seeded with the fixtures,
// with the fixtures' key. Decrypt must not panic, and it must refuse a
// tampered document: whenever it succeeds, its output reads back and the
// values the MAC covers (every value, or the encrypted ones with
// mac_only_encrypted, in order) are exactly those of a fixture's plain
// document. What the MAC leaves out (comments, layout, keys of plain
// values, null and empty values) may differ. An error never holds a
// fixture's secret unless the input does.
func FuzzDecrypt(f *testing.F) {
	ids, fxs, secrets := fuzzFixtures(f)
	var refs []macReference
	for _, fx := range fxs {
		f.Add(fx.format == JSON, fx.enc)
		refs = append(refs, fx.ref)
	}
	f.Add(false, []byte("a: 1\nsops:\n    mac: x\n"))
	f.Add(true, []byte(`{"a":[1,2.5,true,null,"x"],"sops":{"age":[{"recipient":"x","enc":"y"}],"lastmodified":"2024-01-01T00:00:00Z","mac":"","version":"3.13.3"}}`))

	f.Fuzz(func(t *testing.T, isJSON bool, doc []byte) {
		format := YAML
		if isJSON {
			format = JSON
		}
		out, err := Decrypt(format, doc, ids)
		checkDecrypted(t, format, doc, out, err, refs, secrets)
	})
}

// FuzzTamper makes one edit to a fixture (bytes [off, off+n) replaced by
// repl), as an attacker without the key would, and checks Decrypt as
// FuzzDecrypt does, against that fixture. Random mutations of a whole
// document nearly always break a ciphertext; one edit reaches the plain
// values, the metadata and the MAC.
func FuzzTamper(f *testing.F) {
	ids, fxs, secrets := fuzzFixtures(f)
	for i, fx := range fxs {
		f.Add(uint8(i), uint16(0), uint8(0), []byte(nil))
		for _, s := range []string{"app: shop", `"app": "shop"`, "lastmodified: \"", "mac_only_encrypted: true", "encrypted_regex", "    - recipient:", "type:str]"} {
			if j := bytes.Index(fx.enc, []byte(s)); j >= 0 {
				f.Add(uint8(i), uint16(j+len(s)-1), uint8(1), []byte("x"))
			}
		}
	}

	f.Fuzz(func(t *testing.T, which uint8, off uint16, n uint8, repl []byte) {
		fx := fxs[int(which)%len(fxs)]
		start := int(off) % (len(fx.enc) + 1)
		end := min(start+int(n), len(fx.enc))
		doc := append(append(bytes.Clone(fx.enc[:start]), repl...), fx.enc[end:]...)
		out, err := Decrypt(fx.format, doc, ids)
		checkDecrypted(t, fx.format, doc, out, err, []macReference{fx.ref}, secrets)
	})
}

// macCovered concatenates the plain bytes of the values of docs the MAC
// covers under rules, as the walker hashes them, and calls visit (when not
// nil) with each value's path.
func macCovered(rules *compiled, docs []mapping, visit func(path []string, b []byte)) []byte {
	var out []byte
	var walk func(v any, path []string)
	walk = func(v any, path []string) {
		switch v := v.(type) {
		case mapping:
			for _, e := range v {
				if e.comment == nil {
					walk(e.value, with(path, e.key))
				}
			}
		case sequence:
			for _, item := range v {
				walk(item, path)
			}
		case nil, *comment:
		default:
			if rules.MACOnlyEncrypted && !rules.encrypts(path) {
				return
			}
			b, _, err := plainBytes(v)
			if err != nil {
				b = []byte("\x00unsupported")
			}
			if visit != nil {
				visit(path, b)
			}
			out = append(out, b...)
		}
	}
	for _, d := range docs {
		walk(d.without(metadataKey), nil)
	}
	return out
}
