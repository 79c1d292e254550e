package writeback

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	yaml "gopkg.in/yaml.v3"
)

// The YAML editor. An edit is made on the declaring document's node tree
// (yaml.v3's node API): setReplicas sets one scalar or adds one entry,
// replaceTemplate swaps one subtree. Writing the tree back whole would
// reformat the user's document, since yaml.v3's encoder normalizes what it
// does not keep (indentation, blank lines, the spaces before a comment), and
// the commit would show lines nobody changed. So the edited tree is compared
// with the document as parsed, and only the mapping entries that differ are
// encoded again, in place of their own lines; every other line, and every
// other document of the file (split at its `---` lines), is kept byte for
// byte. Before anything is written, the new document is parsed again and
// must hold exactly the edited tree, so a layout this misjudges is refused
// rather than written.

// editFunc changes the root mapping of the declaring document in place.
type editFunc func(doc *yaml.Node) error

// objectRef names the object a document declares; an empty Namespace
// matches any.
type objectRef struct {
	Kind, Namespace, Name string
}

func (r objectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// errNoDocument is wrapped by editFile when the file declares no such
// object.
var errNoDocument = errors.New("declares no such object")

// docSeparatorRE is a line that ends one document and starts the next.
var docSeparatorRE = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?\r?$`)

// docMarkerRE is a line that ends a document: a start of the next (with
// content or not) or an end marker.
var docMarkerRE = regexp.MustCompile(`^(---|\.\.\.)([ \t].*)?$`)

// document is one document of a file: its text, data[start:end], and its
// root mapping parsed from that text (node lines count from the text's
// first line).
type document struct {
	start, end int
	root       *yaml.Node
}

// findDocument finds the document of data declaring ref.
func findDocument(data []byte, ref objectRef) (document, bool) {
	starts := []int{0}
	var ends []int
	for _, m := range docSeparatorRE.FindAllIndex(data, -1) {
		ends = append(ends, m[0])
		start := m[1]
		if start < len(data) && data[start] == '\n' {
			start++
		}
		starts = append(starts, start)
	}
	ends = append(ends, len(data))
	for i, start := range starts {
		root, ok := parseRoot(data[start:ends[i]])
		if !ok {
			continue
		}
		meta := mapValue(root, "metadata")
		ns := scalarOf(mapValue(meta, "namespace"))
		if ns == "" {
			ns = "default"
		}
		if scalarOf(mapValue(root, "kind")) != ref.Kind || scalarOf(mapValue(meta, "name")) != ref.Name {
			continue
		}
		if ref.Namespace != "" && ns != ref.Namespace {
			continue
		}
		return document{start: start, end: ends[i], root: root}, true
	}
	return document{}, false
}

// parseRoot parses the first document of text; ok is false when it is not
// YAML or empty.
func parseRoot(text []byte) (*yaml.Node, bool) {
	var n yaml.Node
	if yaml.Unmarshal(text, &n) != nil || len(n.Content) == 0 {
		return nil, false
	}
	return n.Content[0], true
}

// editFile edits the document of data (the file named file) declaring ref
// and returns the file's new content: the other documents, and the lines
// of this one the edit leaves alone, as they were.
func editFile(file string, data []byte, ref objectRef, edit editFunc) ([]byte, error) {
	doc, ok := findDocument(data, ref)
	if !ok {
		return nil, fmt.Errorf("%s %w: %s", file, errNoDocument, ref)
	}
	text := data[doc.start:doc.end]
	orig, _ := parseRoot(text) // the tree as the text has it, to diff against
	if err := edit(doc.root); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	out, err := writeBack(text, orig, doc.root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := sameDocuments(out, text, doc.root); err != nil {
		return nil, fmt.Errorf("%s: cannot edit %s in place (%v): change it by hand", file, ref, err)
	}
	return slicesConcat(data[:doc.start], out, data[doc.end:]), nil
}

// patch replaces the lines [from, to) (0-based) of a document's text.
type patch struct {
	from, to int
	text     string
}

// errReordered: the edit moved fields of a mapping, or the mapping
// repeats a key; it is written again whole.
var errReordered = errors.New("fields were reordered or repeated")

// writeBack is text with the entries where edited differs from orig (its
// root mapping as parsed from text) encoded again.
func writeBack(text []byte, orig, edited *yaml.Node) ([]byte, error) {
	lines := splitLines(string(text))
	eol := "\n" // new lines end as the first line does
	if len(lines) > 0 && trimBreak(lines[0]) != lines[0] {
		eol = lines[0][len(trimBreak(lines[0])):]
	}
	// The document ends at the next line starting with a document marker
	// (`--- !tag` too, which does not split the file), else with the text.
	end := len(lines)
	for i := orig.Line; i < len(lines); i++ {
		if docMarkerRE.MatchString(trimBreak(lines[i])) {
			end = i
			break
		}
	}
	d := differ{lines: lines, eol: eol}
	if err := d.mapping(orig, edited, trimTrailing(lines, 0, end, 0)); err != nil {
		return nil, err
	}
	// Insertions come before what is replaced at the same line.
	sort.SliceStable(d.patches, func(i, j int) bool { return d.patches[i].from < d.patches[j].from })
	var out strings.Builder
	next := 0
	for _, p := range d.patches {
		if p.from < next || p.to < p.from || p.to > len(lines) {
			return nil, errors.New("edits overlap") // not from yaml.v3's positions
		}
		for _, l := range lines[next:p.from] {
			out.WriteString(l)
		}
		if p.from == len(lines) && p.from > 0 && trimBreak(lines[p.from-1]) == lines[p.from-1] {
			out.WriteString(eol) // after a last line without its line break
		}
		out.WriteString(p.text)
		next = p.to
	}
	for _, l := range lines[next:] {
		out.WriteString(l)
	}
	return []byte(out.String()), nil
}

// differ makes the patches that write an edited tree over the text of the
// tree it was parsed as.
type differ struct {
	lines   []string
	eol     string
	patches []patch
}

// mapping adds the patches that make o, a block mapping whose entries
// end before line end, read as e: an entry of e that o lacks is inserted
// before the next entry both have (its own line comment and all), an
// entry e lacks is removed with the comment lines just above it, and an
// entry that differs is encoded again over its lines, except a block
// mapping, where only what differs within it is. It fails with
// errReordered when e has o's fields in another order.
func (d *differ) mapping(o, e *yaml.Node, end int) error {
	if repeats(o) || repeats(e) {
		return errReordered
	}
	at := make([]int, 0, len(e.Content)/2) // of each entry of e, its index in o or -1
	kept := map[int]bool{}
	last := -1
	for ei := 0; ei+1 < len(e.Content); ei += 2 {
		j := entryIndex(o, e.Content[ei].Value)
		if j >= 0 && j <= last {
			return errReordered
		}
		if j >= 0 {
			last = j
			kept[j] = true
		}
		at = append(at, j)
	}
	indent := 0
	if len(o.Content) > 0 {
		indent = o.Content[0].Column - 1
	}
	for oi := 0; oi+1 < len(o.Content); oi += 2 {
		if !kept[oi] {
			d.patches = append(d.patches, patch{from: d.headStart(o.Content[oi]), to: d.entryEnd(o, oi, end)})
		}
	}
	next := 0 // the entries of o before next are behind
	for i, j := range at {
		ek, ev := e.Content[2*i], e.Content[2*i+1]
		if j < 0 {
			line := end
			for oi := next; oi+1 < len(o.Content); oi += 2 {
				if kept[oi] {
					line = o.Content[oi].Line - 1
					break
				}
			}
			if err := d.encode(ek, ev, line, line, indent, true); err != nil {
				return err
			}
			continue
		}
		next = j + 2
		ok, ov := o.Content[j], o.Content[j+1]
		entryEnd := d.entryEnd(o, j, end)
		if sameKey(ok, ek) && sameNode(ov, ev, true) {
			continue
		}
		if sameKey(ok, ek) && blockMapping(ok, ov) && ev.Kind == yaml.MappingNode && ev.Style&yaml.FlowStyle == 0 && len(ev.Content) > 0 {
			saved := len(d.patches)
			switch err := d.mapping(ov, ev, entryEnd); {
			case err == nil:
				continue
			case !errors.Is(err, errReordered):
				return err
			}
			d.patches = d.patches[:saved] // the whole entry, then
		}
		if err := d.encode(ek, ev, ok.Line-1, entryEnd, ok.Column-1, false); err != nil {
			return err
		}
	}
	return nil
}

// entryEnd is the line (0-based, exclusive) where entry i of o ends: the
// next entry's key, else end, less the lines trimTrailing leaves to what
// follows.
func (d *differ) entryEnd(o *yaml.Node, i, end int) int {
	if i+2 < len(o.Content) {
		end = o.Content[i+2].Line - 1
	}
	return trimTrailing(d.lines, o.Content[i].Line, end, o.Content[i].Column-1)
}

// headStart is the line (0-based) where the comment lines right above
// key, indented as it is, start: they go with it.
func (d *differ) headStart(key *yaml.Node) int {
	from := key.Line - 1
	for from > 0 {
		l := trimBreak(d.lines[from-1])
		if !strings.HasPrefix(strings.TrimLeft(l, " "), "#") || len(l)-len(strings.TrimLeft(l, " ")) != key.Column-1 {
			break
		}
		from--
	}
	return from
}

// encode adds the patch writing the entry k: v, indented by indent
// spaces, over the lines [from, to); see encodeEntry for head.
func (d *differ) encode(k, v *yaml.Node, from, to, indent int, head bool) error {
	s, err := encodeEntry(k, v, indent, d.eol, head)
	if err != nil {
		return err
	}
	d.patches = append(d.patches, patch{from: from, to: to, text: s})
	return nil
}

// blockMapping reports whether the value v of key k is a block mapping
// with its entries on lines of their own (in the text parsed).
func blockMapping(k, v *yaml.Node) bool {
	return v.Kind == yaml.MappingNode && v.Style&yaml.FlowStyle == 0 && len(v.Content) > 0 && v.Content[0].Line > k.Line
}

// trimTrailing moves end (exclusive, 0-based) of the lines of an entry
// whose key is on line keyLine (1-based) back over blank lines and
// comments indented at most as the key: they belong to what follows.
func trimTrailing(lines []string, keyLine, end, indent int) int {
	for end > keyLine {
		l := trimBreak(lines[end-1])
		t := strings.TrimSpace(l)
		comment := strings.HasPrefix(t, "#") && len(l)-len(strings.TrimLeft(l, " ")) <= indent
		if t != "" && !comment {
			break
		}
		end--
	}
	return end
}

// lineBreaks are what yaml.v3 counts lines by (as libyaml does): the
// node positions the edit is placed by are in these lines.
var lineBreaks = []string{"\r\n", "\r", "\n", "\u0085", "\u2028", "\u2029"}

// splitLines splits text after each line break.
func splitLines(text string) []string {
	var lines []string
	for start, i := 0, 0; i < len(text); {
		n := 0
		for _, b := range lineBreaks {
			if strings.HasPrefix(text[i:], b) {
				n = len(b)
				break
			}
		}
		switch {
		case n > 0:
			i += n
			lines = append(lines, text[start:i])
			start = i
		case i+1 == len(text):
			lines = append(lines, text[start:])
			i++
		default:
			i++
		}
	}
	return lines
}

// trimBreak is line without its line break.
func trimBreak(line string) string {
	for _, b := range lineBreaks {
		if s, ok := strings.CutSuffix(line, b); ok {
			return s
		}
	}
	return line
}

// encodeEntry is the lines of the mapping entry k: v, indented by indent
// spaces. The key's foot comment, and without head its head comment, are
// left out: they are on lines of their own, which stay as they are (a new
// entry has head).
func encodeEntry(k, v *yaml.Node, indent int, eol string, head bool) (string, error) {
	key := *k
	key.FootComment = ""
	if !head {
		key.HeadComment = ""
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{&key, v}}); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	// Comments after the entry, not indented under it, belong to what
	// follows (trimTrailing): those of the text stay, these would repeat
	// them.
	for len(lines) > 1 && (lines[len(lines)-1] == "" || strings.HasPrefix(lines[len(lines)-1], "#")) {
		lines = lines[:len(lines)-1]
	}
	pad := strings.Repeat(" ", indent)
	var out strings.Builder
	for _, l := range lines {
		if l != "" {
			out.WriteString(pad)
		}
		out.WriteString(l + eol)
	}
	return out.String(), nil
}

// sameDocuments checks that text, a document edited from one whose root
// mapping is now edited, parses to edited (styles and comments aside) and
// holds no more documents than before.
func sameDocuments(text, before []byte, edited *yaml.Node) error {
	docs := func(b []byte) ([]*yaml.Node, error) {
		var out []*yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return nil, err
			}
			out = append(out, &n)
		}
	}
	now, err := docs(text)
	if err != nil {
		return fmt.Errorf("the result does not parse: %w", err)
	}
	was, err := docs(before)
	if err != nil || len(was) != len(now) || len(now) == 0 || len(now[0].Content) == 0 {
		return errors.New("the result has other documents")
	}
	if !sameNode(now[0].Content[0], edited, false) {
		return errors.New("the result says more than the edit")
	}
	for i := 1; i < len(now); i++ {
		if !sameNode(now[i], was[i], false) {
			return errors.New("the result changes another document")
		}
	}
	return nil
}

// sameNode compares two trees but for where their nodes are; with
// styled, their styles and comments too.
func sameNode(a, b *yaml.Node, styled bool) bool {
	if a.Kind != b.Kind || a.Tag != b.Tag || a.Value != b.Value || a.Anchor != b.Anchor || len(a.Content) != len(b.Content) {
		return false
	}
	if styled && (a.Style != b.Style || a.HeadComment != b.HeadComment || a.LineComment != b.LineComment || a.FootComment != b.FootComment) {
		return false
	}
	if a.Kind == yaml.AliasNode {
		return true // the same name: the anchors are compared where they are
	}
	for i := range a.Content {
		if !sameNode(a.Content[i], b.Content[i], styled) {
			return false
		}
	}
	return true
}

// sameKey compares two keys as an entry's first line shows them: their
// head and foot comments are on lines of their own, which stay.
func sameKey(a, b *yaml.Node) bool {
	x, y := *a, *b
	x.HeadComment, x.FootComment, y.HeadComment, y.FootComment = "", "", "", ""
	return sameNode(&x, &y, true)
}

// setReplicas sets spec.replicas, or adds it as spec's first field.
func setReplicas(doc *yaml.Node, replicas int32) error {
	specKey, spec := mapEntry(doc, "spec")
	if spec == nil || spec.Kind != yaml.MappingNode {
		return errors.New("no spec mapping")
	}
	val := strconv.Itoa(int(replicas))
	if _, cur := mapEntry(spec, "replicas"); cur != nil {
		if cur.Kind != yaml.ScalarNode || cur.Style != 0 {
			return errors.New("spec.replicas is not a plain number")
		}
		cur.Tag, cur.Value = "!!int", val
		return nil
	}
	if spec.Style&yaml.FlowStyle != 0 || len(spec.Content) == 0 {
		return errors.New("spec is written in flow style: add replicas by hand")
	}
	if spec.Content[0].Line == specKey.Line {
		return errors.New("spec's fields start on its own line: add replicas by hand")
	}
	spec.Content = append([]*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: "replicas"},
		{Kind: yaml.ScalarNode, Tag: "!!int", Value: val},
	}, spec.Content...)
	return nil
}

// replaceTemplate replaces spec.template with tmpl.
func replaceTemplate(doc *yaml.Node, tmpl *yaml.Node) error {
	spec := mapValue(doc, "spec")
	if spec == nil || spec.Kind != yaml.MappingNode {
		return errors.New("no spec mapping")
	}
	for i := 0; i+1 < len(spec.Content); i += 2 {
		if k := spec.Content[i]; k.Value == "template" && spec.Content[i+1].Line != k.Line {
			spec.Content[i+1] = tmpl
			return nil
		}
	}
	return errors.New("spec.template is missing or written in flow style: edit it by hand")
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	_, v := mapEntry(n, key)
	return v
}

func mapEntry(n *yaml.Node, key string) (k, v *yaml.Node) {
	if i := entryIndex(n, key); i >= 0 {
		return n.Content[i], n.Content[i+1]
	}
	return nil, nil
}

// repeats reports whether mapping n has a key twice.
func repeats(n *yaml.Node) bool {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if seen[n.Content[i].Value] {
			return true
		}
		seen[n.Content[i].Value] = true
	}
	return false
}

// entryIndex is the index in n.Content of key's entry, or -1.
func entryIndex(n *yaml.Node, key string) int {
	if n == nil || n.Kind != yaml.MappingNode {
		return -1
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return i
		}
	}
	return -1
}

func scalarOf(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func slicesConcat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
