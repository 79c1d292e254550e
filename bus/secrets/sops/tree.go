package sops

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	yaml "gopkg.in/yaml.v3"
)

// A document is held the way sops holds it, because its MAC is defined on
// that form: mappings keep their order, every scalar is typed as sops types
// it (string, int, float64, bool, time.Time or nil), and YAML comments are
// entries of their own, kept in the place sops gives them, so that the ones
// in encrypted parts can be encrypted and put back where sops expects them.

// mapping is a YAML mapping or JSON object, in document order.
type mapping []entry

// entry is a key and its value, or a comment line (comment set).
type entry struct {
	key     string
	value   any // a scalar, mapping or sequence
	comment *comment
}

// sequence is a list; its elements are scalars, mappings, sequences or
// *comment.
type sequence []any

// comment is one comment line, without its '#'.
type comment struct {
	text   string
	inline bool // written after a value, on the same line
}

// lookup returns the value of key in m.
func (m mapping) lookup(key string) (any, bool) {
	for _, e := range m {
		if e.comment == nil && e.key == key {
			return e.value, true
		}
	}
	return nil, false
}

// without returns m without the entries of key.
func (m mapping) without(key string) mapping {
	out := make(mapping, 0, len(m))
	for _, e := range m {
		if e.comment != nil || e.key != key {
			out = append(out, e)
		}
	}
	return out
}

// loadYAML reads every document of a YAML stream; each must be a mapping.
func loadYAML(in []byte) ([]mapping, error) {
	var docs []mapping
	dec := yaml.NewDecoder(bytes.NewReader(in))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse YAML: %w", quoteless(err))
		}
		// Decoding into a map refuses duplicate keys: sops refuses them
		// too, and a document holding one key twice says two things.
		var v any
		if err := doc.Decode(&v); err != nil {
			return nil, fmt.Errorf("parse YAML: %w", quoteless(err))
		}
		m, err := yamlMapping(&doc, mapping{}, false)
		if err != nil {
			return nil, err
		}
		docs = append(docs, m)
	}
}

// quoteless drops the values yaml.v3 quotes in backticks in some errors
// ("cannot decode !!str `...` as a !!int"): they may be plain text. Its
// other errors name lines and keys only.
func quoteless(err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		if first := strings.Index(l, "`"); first >= 0 {
			last := strings.LastIndex(l, "`")
			lines[i] = l[:first] + "(a value)" + l[last+1:]
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

// yamlComments appends the lines of a yaml.v3 comment ("# a\n# b") to m as
// comment entries. Blank lines are dropped, as sops drops them.
func yamlComments(m mapping, text string, inline bool) mapping {
	for _, line := range strings.Split(text, "\n") {
		if line != "" {
			m = append(m, entry{comment: &comment{text: line[1:], inline: inline}})
		}
	}
	return m
}

// yamlSeqComments is yamlComments for a sequence.
func yamlSeqComments(s sequence, text string, inline bool) sequence {
	for _, line := range strings.Split(text, "\n") {
		if line != "" {
			s = append(s, &comment{text: line[1:], inline: inline})
		}
	}
	return s
}

// yamlMapping appends the entries of n (a document or mapping node) to m,
// with its comments in the order sops reads them: a node's head and line
// comments, then for each key its head and line comments, a scalar value's
// head and (inline) line comments, the value, the scalar's foot comment,
// the key's foot comment; last the node's foot comment. commentsDone says
// the caller already took n's own comments.
func yamlMapping(n *yaml.Node, m mapping, commentsDone bool) (mapping, error) {
	if !commentsDone {
		m = yamlComments(m, n.HeadComment, false)
		m = yamlComments(m, n.LineComment, false)
	}
	var err error
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if m, err = yamlMapping(c, m, false); err != nil {
				return nil, err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			m = yamlComments(m, k.HeadComment, false)
			m = yamlComments(m, k.LineComment, false)
			scalar := v.Kind == yaml.ScalarNode || v.Kind == yaml.AliasNode
			if scalar {
				m = yamlComments(m, v.HeadComment, false)
				m = yamlComments(m, v.LineComment, true)
			}
			var key any
			if err := k.Decode(&key); err != nil {
				return nil, fmt.Errorf("parse YAML: line %d: %w", k.Line, quoteless(err))
			}
			s, ok := key.(string)
			if !ok {
				return nil, fmt.Errorf("parse YAML: line %d: key of type %T: sops supports string keys only", k.Line, key)
			}
			value, err := yamlValue(v, scalar)
			if err != nil {
				return nil, err
			}
			m = append(m, entry{key: s, value: value})
			if scalar {
				m = yamlComments(m, v.FootComment, false)
			}
			m = yamlComments(m, k.FootComment, false)
		}
	case yaml.ScalarNode:
		// "---" with nothing after it is an empty document.
		if n.ShortTag() != "!!null" {
			return nil, fmt.Errorf("parse YAML: line %d: a document must be a mapping, not a value", n.Line)
		}
	case yaml.SequenceNode:
		return nil, fmt.Errorf("parse YAML: line %d: a document must be a mapping, not a sequence", n.Line)
	case yaml.AliasNode:
		if m, err = yamlMapping(n.Alias, m, false); err != nil {
			return nil, err
		}
	}
	if !commentsDone {
		m = yamlComments(m, n.FootComment, false)
	}
	return m, nil
}

// yamlValue converts a value node. Scalars are typed by yaml.v3's decoding
// into an interface, which is what sops does.
func yamlValue(n *yaml.Node, commentsDone bool) (any, error) {
	switch n.Kind {
	case yaml.SequenceNode:
		var s sequence
		if !commentsDone {
			s = yamlSeqComments(s, n.HeadComment, false)
			s = yamlSeqComments(s, n.LineComment, false)
		}
		for _, item := range n.Content {
			s = yamlSeqComments(s, item.HeadComment, false)
			s = yamlSeqComments(s, item.LineComment, true)
			v, err := yamlValue(item, true)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
			s = yamlSeqComments(s, item.FootComment, false)
		}
		if !commentsDone {
			s = yamlSeqComments(s, n.FootComment, false)
		}
		return s, nil
	case yaml.MappingNode:
		return yamlMapping(n, mapping{}, commentsDone)
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("parse YAML: %w", quoteless(err))
		}
		return v, nil
	case yaml.AliasNode:
		return yamlValue(n.Alias, false)
	}
	return nil, nil
}

// emitYAML writes documents as sops does: indented by four, each mapping's
// comments put back as head, line or foot comments of its nodes.
func emitYAML(docs []mapping) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(4)
	for _, m := range docs {
		doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{yamlMappingNode(m)}}
		if err := enc.Encode(doc); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// joinComments is the yaml.v3 comment text of lines.
func joinComments(lines []string) string {
	return "#" + strings.Join(lines, "\n#")
}

// addComment adds comment lines to one of a node's comment fields: before
// what it holds (a head comment), or after it (a line or foot comment).
func addComment(field *string, lines []string, before bool) {
	if len(lines) == 0 {
		return
	}
	c := joinComments(lines)
	switch {
	case *field == "":
		*field = c
	case before:
		*field = c + "\n" + *field
	default:
		*field += "\n" + c
	}
}

// yamlMappingNode builds the node of a mapping (comments placed as
// withComments says).
func yamlMappingNode(m mapping) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	withComments(n, len(m), func(i int) *comment { return m[i].comment }, func(i int) (*yaml.Node, *yaml.Node) {
		k, v := yamlValueNode(m[i].key), yamlValueNode(m[i].value)
		n.Content = append(n.Content, k, v)
		return k, v
	})
	return n
}

// yamlSequenceNode builds the node of a sequence (comments placed as
// withComments says).
func yamlSequenceNode(s sequence) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode}
	withComments(n, len(s), func(i int) *comment { c, _ := s[i].(*comment); return c }, func(i int) (*yaml.Node, *yaml.Node) {
		item := yamlValueNode(s[i])
		n.Content = append(n.Content, item)
		return item, item
	})
	return n
}

// withComments adds the children of a mapping or sequence node n, whose
// items are 0..count-1: commentAt says which are comment lines, and add
// appends the nodes of any other and returns the node that takes the head
// comments before it and the one that takes inline comments. Comments
// before the first item become n's head comment, later ones the head
// comment of the next item, inline ones the line comment of its value;
// comments after the last item become that item's foot comment.
func withComments(n *yaml.Node, count int, commentAt func(i int) *comment, add func(i int) (head, line *yaml.Node)) {
	var head, inline []string
	var last *yaml.Node
	for i := range count {
		if c := commentAt(i); c != nil {
			if c.inline {
				inline = append(inline, c.text)
			} else {
				head = append(head, c.text)
			}
			continue
		}
		if last == nil {
			addComment(&n.HeadComment, head, true)
			head = nil
		}
		h, l := add(i)
		addComment(&h.HeadComment, head, true)
		addComment(&l.LineComment, inline, false)
		head, inline, last = nil, nil, h
	}
	rest := append(head, inline...)
	if last == nil {
		addComment(&n.HeadComment, rest, true)
	} else {
		addComment(&last.FootComment, rest, false)
	}
}

func yamlValueNode(v any) *yaml.Node {
	switch v := v.(type) {
	case mapping:
		return yamlMappingNode(v)
	case sequence:
		return yamlSequenceNode(v)
	case *comment:
		// A value whose ciphertext said it is a comment: not data.
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		// Only the scalar types of this package reach here, and yaml.v3
		// encodes them all.
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	return n
}

// loadJSON reads a JSON object in order. Numbers become int when they are
// integers in int64's range and float64 otherwise, as sops types them.
func loadJSON(in []byte) ([]mapping, error) {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("parse JSON: %w", err)
	}
	if tok != json.Delim('{') {
		return nil, errors.New("parse JSON: the document must be an object")
	}
	m, err := jsonObject(dec)
	if err != nil {
		return nil, fmt.Errorf("parse JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("parse JSON: data after the top-level object")
	}
	return []mapping{m}, nil
}

// jsonObject reads an object's members after its '{'.
func jsonObject(dec *json.Decoder) (mapping, error) {
	m := mapping{}
	seen := map[string]bool{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if tok == json.Delim('}') {
			return m, nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key expected")
		}
		if seen[key] {
			return nil, fmt.Errorf("key %q given twice", key)
		}
		seen[key] = true
		v, err := jsonValue(dec)
		if err != nil {
			return nil, err
		}
		m = append(m, entry{key: key, value: v})
	}
}

// jsonValue reads one value.
func jsonValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			return jsonObject(dec)
		case '[':
			s := sequence{}
			for dec.More() {
				v, err := jsonValue(dec)
				if err != nil {
					return nil, err
				}
				s = append(s, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return s, nil
		}
		return nil, fmt.Errorf("unexpected %v", tok)
	case json.Number:
		if i, err := tok.Int64(); err == nil {
			return int(i), nil
		}
		f, err := tok.Float64()
		if err != nil {
			return nil, errors.New("a number out of range")
		}
		return f, nil
	}
	return tok, nil // string, bool or nil
}

// emitJSON writes an object as sops does: its members in order, comments
// left out, indented by tabs, with a final newline.
func emitJSON(docs []mapping) ([]byte, error) {
	if len(docs) != 1 {
		return nil, errors.New("a JSON document holds one object")
	}
	var compact bytes.Buffer
	if err := jsonWrite(&compact, docs[0]); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "\t"); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func jsonWrite(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case mapping:
		b.WriteByte('{')
		n := 0
		for _, e := range v {
			if e.comment != nil {
				continue
			}
			if n > 0 {
				b.WriteByte(',')
			}
			n++
			k, err := json.Marshal(e.key)
			if err != nil {
				return err
			}
			b.Write(k)
			b.WriteByte(':')
			if err := jsonWrite(b, e.value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case sequence:
		b.WriteByte('[')
		n := 0
		for _, item := range v {
			if _, ok := item.(*comment); ok {
				continue
			}
			if n > 0 {
				b.WriteByte(',')
			}
			n++
			if err := jsonWrite(b, item); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case *comment:
		b.WriteString("null")
	default:
		s, err := json.Marshal(v)
		if err != nil {
			// Never quote the value: it may be plain text.
			return fmt.Errorf("a value of type %T cannot be written as JSON", v)
		}
		b.Write(s)
	}
	return nil
}
