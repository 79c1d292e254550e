package sops

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"filippo.io/age"
	yamlv3 "gopkg.in/yaml.v3"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/capstan-io/capstan/bus/secrets"
	"github.com/capstan-io/capstan/manifests"
)

// SOPS encrypted Secrets.
//
// A Secret committed encrypted with SOPS (age recipients, the format Flux
// users keep: `sops --encrypt --age age1... --encrypted-regex
// '^(data|stringData)$'`) passes the loader through LoadSopsSecrets, which
// validates it with its ciphertext masked and keeps the document as
// committed in Secret.Sops, with no Data. So the objects bucket, the audit
// stream and the events only ever hold ciphertext. The control plane
// decrypts a Secret only when it builds the assignment of a pod that uses
// it (assignments.go), with the age identities of --sops-age-key-file.

// ErrNoKey: a SOPS Secret, and no age identity to decrypt it with.
var ErrNoKey = secrets.ErrNoKey

// EncryptedRegex is what `capstan secret encrypt` encrypts: the values
// under data and stringData, leaving apiVersion, kind and metadata plain.
const EncryptedRegex = "^(data|stringData)$"

// Decrypter decrypts SOPS Secrets with age identities. A nil *Decrypter decrypts
// nothing (ErrNoKey). It is safe for concurrent use.
type Decrypter struct {
	ids []age.Identity
}

// NewDecrypter parses age identities ("AGE-SECRET-KEY-1...", one a line; blank
// lines and # comments skipped), as in an age key file.
func NewDecrypter(identities string) (*Decrypter, error) {
	ids, err := ParseIdentities(identities)
	if err != nil {
		return nil, fmt.Errorf("sops age identities: %w", err)
	}
	if len(ids) == 0 {
		return nil, errors.New("sops age identities: none found")
	}
	return &Decrypter{ids: ids}, nil
}

// LoadKeyFile reads an age key file (as age-keygen writes it).
func LoadKeyFile(name string) (*Decrypter, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("sops age key file: %w", err)
	}
	s, err := NewDecrypter(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// Decrypt returns a copy of sec with its data decrypted into Data and Sops
// cleared; a Secret that is not encrypted is returned as it is. The
// document's MAC is checked, so a value moved or altered is refused.
func (s *Decrypter) Decrypt(sec *manifests.Secret) (*manifests.Secret, error) {
	if len(sec.Sops) == 0 {
		return sec, nil
	}
	if s == nil {
		return nil, ErrNoKey
	}
	d := sec.SopsDocument()
	if d == nil {
		return nil, errors.New("the Secret's sops field holds no encrypted document")
	}
	plain, err := s.decryptDocument(d.Format, []byte(d.Document))
	if err != nil {
		return nil, err
	}
	var dec struct {
		Data       map[string][]byte `json:"data"`
		StringData map[string]string `json:"stringData"`
	}
	if err := k8syaml.Unmarshal(plain, &dec); err != nil {
		// The text is plain now: never quote it.
		return nil, errors.New("decrypted document is not a Secret (bad base64 in data?)")
	}
	out := *sec
	out.Sops, out.StringData = nil, nil
	out.Data = make(map[string][]byte, len(dec.Data)+len(dec.StringData))
	for k, v := range dec.Data {
		out.Data[k] = v
	}
	for k, v := range dec.StringData {
		out.Data[k] = []byte(v)
	}
	return &out, nil
}

// sopsFormat is the format of a document as Secret.Sops names it.
func sopsFormat(format string) (Format, error) {
	switch format {
	case "yaml", "":
		return YAML, nil
	case "json":
		return JSON, nil
	}
	return "", fmt.Errorf("sops: unknown format %q", format)
}

// decryptDocument decrypts a SOPS document and returns it in plain text,
// its MAC checked.
func (s *Decrypter) decryptDocument(format string, doc []byte) ([]byte, error) {
	f, err := sopsFormat(format)
	if err != nil {
		return nil, err
	}
	return Decrypt(f, doc, s.ids)
}

// EncryptSecret encrypts a Secret manifest (YAML) for age recipients the
// way `sops --encrypt --age R --encrypted-regex '^(data|stringData)$'`
// does, and returns the encrypted YAML.
func EncryptSecret(plain []byte, recipients []string) ([]byte, error) {
	return encryptDocument("yaml", plain, recipients)
}

func encryptDocument(format string, plain []byte, recipients []string) ([]byte, error) {
	f, err := sopsFormat(format)
	if err != nil {
		return nil, err
	}
	return Encrypt(f, plain, recipients, Rules{EncryptedRegex: EncryptedRegex})
}

// LoadSecrets wraps load (schema.Load) so that Secrets committed
// encrypted with SOPS pass it. In such a document (kind Secret with a
// top-level sops block) each ciphertext value is masked, in place and at
// the same length, so load validates the rest with every position intact.
// The Secrets loaded then hold the document as committed in Sops and no
// data. With dec, each is also decrypted once (the plain text dropped at
// once), so a Secret no key can open rejects the revision, at the file,
// line and column of its name. With a nil dec (validate without keys) the
// ciphertext is not checked.
func LoadSecrets(load func([]manifests.File) ([]manifests.Object, error), dec *Decrypter) func([]manifests.File) ([]manifests.Object, error) {
	return func(files []manifests.File) ([]manifests.Object, error) {
		var docs []sopsDoc
		var errs []string
		masked := files
		for i, f := range files {
			if !bytes.Contains(f.Data, []byte("sops")) || !bytes.Contains(f.Data, []byte("ENC[")) {
				continue
			}
			data, found, err := maskSopsFile(f)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			if len(found) == 0 {
				continue
			}
			if &masked[0] == &files[0] {
				masked = append([]manifests.File(nil), files...)
			}
			masked[i].Data = data
			docs = append(docs, found...)
		}
		objs, err := load(masked)
		switch {
		// The loader's own error keeps its type (schema.ErrorList), so
		// callers can still list its file:line:col errors.
		case len(errs) > 0 && err != nil:
			return nil, fmt.Errorf("%s\n%w", strings.Join(errs, "\n"), err)
		case err != nil:
			return nil, err
		case len(errs) > 0:
			return nil, errors.New(strings.Join(errs, "\n"))
		}
		if len(docs) == 0 {
			return objs, nil
		}
		byKey := make(map[string]sopsDoc, len(docs))
		for _, d := range docs {
			byKey[manifests.Key("Secret", d.namespace, d.name)] = d
		}
		for _, obj := range objs {
			sec, ok := obj.(*manifests.Secret)
			if !ok {
				continue
			}
			d, ok := byKey[manifests.KeyOf(sec)]
			if !ok {
				continue
			}
			sec.Data, sec.StringData = nil, nil
			raw, err := json.Marshal(manifests.SopsSecret{Format: d.format, Document: d.text})
			if err != nil {
				return nil, err
			}
			sec.Sops = raw
			if dec != nil {
				if _, err := dec.Decrypt(sec); err != nil {
					errs = append(errs, fmt.Sprintf("%s:%d:%d: metadata.name: Secret %s/%s cannot be decrypted: %v", d.file, d.line, d.col, sec.Namespace, sec.Name, err))
				}
			}
		}
		if len(errs) > 0 {
			return nil, errors.New(strings.Join(errs, "\n"))
		}
		return objs, nil
	}
}

// sopsDoc is a SOPS Secret document found in a file.
type sopsDoc struct {
	file, format, text string
	namespace, name    string
	line, col          int // of metadata.name
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// maskSopsFile finds the SOPS Secret documents of a YAML or JSON file and
// returns the file with their ciphertext values masked.
func maskSopsFile(f manifests.File) ([]byte, []sopsDoc, error) {
	format := "yaml"
	switch strings.ToLower(path.Ext(f.Path)) {
	case ".json":
		format = "json"
	case ".yaml", ".yml":
	default:
		return f.Data, nil, nil
	}
	out := bytes.Clone(f.Data)
	var found []sopsDoc
	// Documents are cut at their separators so each one's text is kept
	// exactly as committed: SOPS' MAC covers its values in order.
	starts := []int{0}
	if format == "yaml" {
		for _, m := range docSeparator.FindAllIndex(f.Data, -1) {
			start := m[1]
			if start < len(f.Data) && f.Data[start] == '\n' {
				start++
			}
			starts = append(starts, start)
		}
	}
	for i, start := range starts {
		end := len(f.Data)
		if i+1 < len(starts) {
			end = docSeparator.FindAllIndex(f.Data, -1)[i][0]
		}
		text := f.Data[start:end]
		firstLine := bytes.Count(f.Data[:start], []byte("\n"))
		var root yamlv3.Node
		if err := yamlv3.Unmarshal(text, &root); err != nil || len(root.Content) == 0 {
			continue // the loader reports syntax errors
		}
		doc := root.Content[0]
		if scalar(lookup(doc, "kind")) != "Secret" || lookup(doc, "sops") == nil || lookup(doc, "sops").Kind != yamlv3.MappingNode {
			continue
		}
		meta := lookup(doc, "metadata")
		nameNode := lookup(meta, "name")
		ns := scalar(lookup(meta, "namespace"))
		if ns == "" {
			ns = "default"
		}
		d := sopsDoc{file: f.Path, format: format, text: string(text), namespace: ns, name: scalar(nameNode)}
		if nameNode != nil {
			d.line, d.col = nameNode.Line+firstLine, nameNode.Column
		}
		for _, field := range []string{"data", "stringData"} {
			m := lookup(doc, field)
			if m == nil || m.Kind != yamlv3.MappingNode {
				continue
			}
			for j := 1; j < len(m.Content); j += 2 {
				v := m.Content[j]
				if v.Kind != yamlv3.ScalarNode || !strings.HasPrefix(v.Value, "ENC[") {
					continue
				}
				if err := maskAt(out, firstLine+v.Line, v.Column, v); err != nil {
					return nil, nil, fmt.Errorf("%s:%d:%d: %s: %w", f.Path, firstLine+v.Line, v.Column, field, err)
				}
			}
		}
		found = append(found, d)
	}
	return out, found, nil
}

// maskAt overwrites the scalar v, which starts at line:col (1-based, col in
// characters) of data, with "" and spaces up to its length.
func maskAt(data []byte, line, col int, v *yamlv3.Node) error {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return errors.New("ciphertext position out of range")
		}
		off += i + 1
	}
	for c := 1; c < col && off < len(data); c++ {
		_, size := utf8.DecodeRune(data[off:])
		off += size
	}
	token := v.Value
	switch v.Style {
	case yamlv3.DoubleQuotedStyle:
		token = `"` + token + `"`
	case yamlv3.SingleQuotedStyle:
		token = `'` + token + `'`
	case 0:
	default:
		return errors.New("a SOPS value must be a plain or quoted scalar")
	}
	if !bytes.HasPrefix(data[off:], []byte(token)) {
		return errors.New("a SOPS value must be written on one line")
	}
	copy(data[off:], `""`+strings.Repeat(" ", len(token)-2))
	return nil
}

// lookup returns the value of a mapping's key, or nil.
func lookup(n *yamlv3.Node, key string) *yamlv3.Node {
	if n == nil || n.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// scalar is a scalar node's value, or "".
func scalar(n *yamlv3.Node) string {
	if n == nil || n.Kind != yamlv3.ScalarNode {
		return ""
	}
	return n.Value
}
