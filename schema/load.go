package schema

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/ast"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/token"
	cuejson "cuelang.org/go/encoding/json"
	cueyaml "cuelang.org/go/encoding/yaml"

	"github.com/capstan-io/capstan/manifests"
)

// Load decodes, defaults and validates manifest files, and returns their
// objects in the order they appear. It checks every file and collects every
// problem: on any, it returns nil objects and an *ErrorList. Files whose
// names do not end in .yaml, .yml, .json or .cue are ignored.
//
// Load does no I/O and is safe for concurrent use.
func Load(files []manifests.File) ([]manifests.Object, error) {
	results := make([]fileResult, len(files))
	workers := min(runtime.GOMAXPROCS(0), len(files))
	if workers <= 1 {
		c := pool.Get().(*compiled)
		for i, f := range files {
			results[i] = c.loadFile(f)
		}
		pool.Put(c)
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				c := pool.Get().(*compiled)
				defer pool.Put(c)
				for {
					i := int(next.Add(1)) - 1
					if i >= len(files) {
						return
					}
					results[i] = c.loadFile(files[i])
				}
			})
		}
		wg.Wait()
	}
	return merge(results)
}

// LoadPaths reads the manifest files at paths, each a file or a directory,
// and loads them with Load. Directories are walked recursively in lexical
// order, skipping those whose names begin with a dot. Only files ending in
// .yaml, .yml, .json or .cue are read, whether named or found in a walk.
func LoadPaths(paths ...string) ([]manifests.Object, error) {
	files, err := ReadPaths(paths...)
	if err != nil {
		return nil, err
	}
	return Load(files)
}

// ReadPaths reads the manifest files (.yaml, .yml, .json, .cue) of files or
// directories, walked recursively, skipping dot-directories, in lexical
// order; LoadPaths is ReadPaths then Load.
func ReadPaths(paths ...string) ([]manifests.File, error) {
	var files []manifests.File
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != root && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if !isManifest(p) {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files = append(files, manifests.File{Path: filepath.ToSlash(p), Data: data})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("load manifests: %w", err)
		}
	}
	return files, nil
}

func isManifest(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json", ".cue":
		return true
	}
	return false
}

// fileResult is what loading one file gave.
type fileResult struct {
	objs []loaded
	errs []Error
}

// loaded is a valid object and where its name was declared.
type loaded struct {
	obj       manifests.Object
	file      string
	line, col int
}

// merge joins the results of the files in order, adds an error for each
// object declared twice, and sorts the errors.
func merge(results []fileResult) ([]manifests.Object, error) {
	var objs []manifests.Object
	var errs []Error
	seen := map[string]loaded{}
	for _, r := range results {
		errs = append(errs, r.errs...)
		for _, l := range r.objs {
			key := manifests.KeyOf(l.obj)
			if first, dup := seen[key]; dup {
				m := l.obj.GetObjectMeta()
				name := m.Name
				if m.Namespace != "" {
					name = m.Namespace + "/" + name
				}
				errs = append(errs, Error{File: l.file, Line: l.line, Col: l.col, Field: "metadata.name",
					Msg: fmt.Sprintf("duplicate %s %q: also declared at %s:%d:%d", l.obj.GetTypeMeta().Kind, name, first.file, first.line, first.col)})
				continue
			}
			seen[key] = l
			objs = append(objs, l.obj)
		}
	}
	if len(errs) > 0 {
		order := map[string]int{}
		for i, r := range results {
			for _, e := range r.errs {
				if _, ok := order[e.File]; !ok {
					order[e.File] = i
				}
			}
			for _, l := range r.objs {
				if _, ok := order[l.file]; !ok {
					order[l.file] = i
				}
			}
		}
		slices.SortStableFunc(errs, func(a, b Error) int {
			return cmp.Or(cmp.Compare(order[a.File], order[b.File]), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
		})
		return nil, &ErrorList{Errors: errs}
	}
	return objs, nil
}

// doc is one object to validate: a YAML document, a JSON value, an element
// of a List or a field of a CUE file.
type doc struct {
	file   string
	v      cue.Value
	closed bool // the value may be closed: it comes from a CUE file
}

func (c *compiled) loadFile(f manifests.File) fileResult {
	var docs []doc
	var errs []Error
	switch strings.ToLower(path.Ext(f.Path)) {
	case ".yaml", ".yml":
		docs, errs = c.yamlDocs(f)
	case ".json":
		docs, errs = c.jsonDocs(f)
	case ".cue":
		docs, errs = c.cueDocs(f)
	default:
		return fileResult{}
	}
	var r fileResult
	r.errs = errs
	for _, d := range docs {
		for _, d := range c.expandList(d, &r.errs) {
			obj, errs := c.object(d)
			r.errs = append(r.errs, errs...)
			if obj != nil {
				line, col := d.posOf([]any{"metadata", "name"})
				r.objs = append(r.objs, loaded{obj: obj, file: d.file, line: line, col: col})
			}
		}
	}
	return r
}

func (c *compiled) yamlDocs(f manifests.File) ([]doc, []Error) {
	var docs []doc
	dec := cueyaml.NewDecoder(f.Path, bytes.NewReader(f.Data))
	for {
		expr, err := dec.Extract()
		if expr != nil && err == nil || err == io.EOF && expr != nil {
			if d, ok := c.exprDoc(f.Path, expr); ok {
				docs = append(docs, d)
			}
		}
		if err == io.EOF {
			return docs, nil
		}
		if err != nil {
			return docs, []Error{syntaxError(f.Path, err)}
		}
	}
}

func (c *compiled) jsonDocs(f manifests.File) ([]doc, []Error) {
	if len(bytes.TrimSpace(f.Data)) == 0 {
		return nil, nil
	}
	expr, err := cuejson.Extract(f.Path, f.Data)
	if err != nil {
		return nil, []Error{syntaxError(f.Path, err)}
	}
	if d, ok := c.exprDoc(f.Path, expr); ok {
		return []doc{d}, nil
	}
	return nil, nil
}

// exprDoc builds a YAML or JSON value, after normalizing it. An empty
// document is skipped.
func (c *compiled) exprDoc(file string, expr ast.Expr) (doc, bool) {
	if lit, ok := expr.(*ast.BasicLit); ok && lit.Kind == token.NULL {
		return doc{}, false
	}
	if b, ok := expr.(*ast.BinaryExpr); ok && b.Op == token.OR { // an empty file: *null | _
		return doc{}, false
	}
	normalize(expr, "", "")
	return doc{file: file, v: c.ctx.BuildExpr(expr)}, true
}

// normalize rewrites the syntax of a YAML or JSON document in place the way
// Kubernetes reads it: a field set to null is unset (`labels:` with nothing
// after it is common), and a quantity may be written as a number
// (`cpu: 2`), which becomes the string manifests.Quantity holds. n is the
// value of the field named name, in the field named parent.
//
// Quantities are the values of resources.requests and resources.limits
// (a container's, a claim template's) and the fields in quantityFields.
func normalize(n ast.Expr, parent, name string) {
	switch x := n.(type) {
	case *ast.StructLit:
		quantities := parent == "resources" && (name == "limits" || name == "requests")
		elts := x.Elts[:0]
		for _, d := range x.Elts {
			if f, ok := d.(*ast.Field); ok {
				lit, isLit := f.Value.(*ast.BasicLit)
				if isLit && lit.Kind == token.NULL {
					continue
				}
				label, _, _ := ast.LabelName(f.Label)
				if isLit && (quantities || quantityFields[label]) && (lit.Kind == token.INT || lit.Kind == token.FLOAT) {
					f.Value = &ast.BasicLit{ValuePos: lit.ValuePos, Kind: token.STRING, Value: strconv.Quote(lit.Value)}
				}
				normalize(f.Value, name, label)
			}
			elts = append(elts, d)
		}
		x.Elts = elts
	case *ast.ListLit:
		for _, e := range x.Elts {
			normalize(e, parent, name)
		}
	}
}

// quantityFields are the fields, other than resources' requests and
// limits, that hold a quantity.
var quantityFields = map[string]bool{"sizeLimit": true, "divisor": true, "averageValue": true}

// cueDocs compiles a CUE file on its own (no imports but CUE's standard
// library) and takes each top-level regular field as an object, or as a
// list of objects.
func (c *compiled) cueDocs(f manifests.File) ([]doc, []Error) {
	v := c.ctx.CompileBytes(f.Data, cue.Filename(f.Path))
	if err := v.Err(); err != nil {
		return nil, c.cueErrors(doc{file: f.Path, v: v}, err, false)
	}
	it, err := v.Fields()
	if err != nil {
		return nil, c.cueErrors(doc{file: f.Path, v: v}, err, false)
	}
	var docs []doc
	var errs []Error
	for it.Next() {
		fv := it.Value()
		switch fv.IncompleteKind() {
		case cue.StructKind:
			docs = append(docs, doc{file: f.Path, v: fv, closed: true})
		case cue.ListKind:
			elems, _ := fv.List()
			for elems.Next() {
				docs = append(docs, doc{file: f.Path, v: elems.Value(), closed: true})
			}
		default:
			line, col := position(fv.Pos())
			errs = append(errs, Error{File: f.Path, Line: line, Col: col, Field: it.Selector().String(),
				Msg: "a top-level field of a .cue file must hold an object or a list of objects"})
		}
	}
	return docs, errs
}

// expandList returns the items of a v1 List, or d itself.
func (c *compiled) expandList(d doc, errs *[]Error) []doc {
	if kind, _ := d.v.LookupPath(cue.ParsePath("kind")).String(); kind != "List" {
		return []doc{d}
	}
	if av, _ := d.v.LookupPath(cue.ParsePath("apiVersion")).String(); av != "v1" {
		*errs = append(*errs, d.errorf([]any{"apiVersion"}, "a List has apiVersion v1, not %q", av))
		return nil
	}
	items, err := d.v.LookupPath(cue.ParsePath("items")).List()
	if err != nil {
		*errs = append(*errs, d.errorf([]any{"items"}, "a List needs a list of items"))
		return nil
	}
	var docs []doc
	for items.Next() {
		docs = append(docs, doc{file: d.file, v: items.Value(), closed: d.closed})
	}
	return docs
}

// object validates one document against the definition of its kind,
// applies the defaults and decodes it.
func (c *compiled) object(d doc) (manifests.Object, []Error) {
	if d.v.IncompleteKind() != cue.StructKind {
		return nil, []Error{d.errorf(nil, "a manifest must be an object, not %v", d.v.IncompleteKind())}
	}
	kindV := d.v.LookupPath(cue.ParsePath("kind"))
	if !kindV.Exists() {
		return nil, []Error{d.errorf(nil, "missing kind")}
	}
	kind, err := kindV.String()
	if err != nil {
		return nil, []Error{d.errorf([]any{"kind"}, "kind must be a string")}
	}
	info, ok := manifests.LookupKind(kind)
	if !ok {
		return nil, []Error{d.errorf([]any{"kind"}, "unknown kind %q (want one of %s)", kind, strings.Join(gitKinds, ", "))}
	}
	if !info.FromGit {
		return nil, []Error{d.errorf([]any{"kind"}, "kind %s is written by Capstan and cannot come from Git", kind)}
	}
	av, err := d.v.LookupPath(cue.ParsePath("apiVersion")).String()
	if err != nil {
		return nil, []Error{d.errorf(nil, "missing apiVersion (want %s for kind %s)", info.APIVersions[0], kind)}
	}
	if !slices.Contains(info.APIVersions, av) {
		return nil, []Error{d.errorf([]any{"apiVersion"}, "apiVersion %q is wrong for kind %s (want %s)", av, kind, info.APIVersions[0])}
	}

	data, errs := c.validate(d, kind)
	if errs != nil {
		return nil, errs
	}
	obj, err := manifests.Decode(data)
	if err != nil {
		// The schema and the Go types disagree: a bug, but report it
		// where the user can see which object triggered it.
		return nil, []Error{d.errorf(nil, "internal error: %v", err)}
	}
	return obj, check(d, obj)
}

// validate validates d against the definition of its kind and returns it
// as JSON with the defaults applied.
//
// Defaults are a second unification, with the document as written rather
// than with its unification with the definition, which is cheaper. One
// unification with the definition and the defaults together costs more
// still, and its errors carry the noise of the defaults' disjunctions. A
// CUE document may be closed by the user's own definitions, which would
// refuse the defaulted fields: it is re-read as plain data first.
func (c *compiled) validate(d doc, kind string) ([]byte, []Error) {
	errs := checkEncoded(d, kind)
	v := c.defs[kind].Unify(d.v)
	if err := v.Validate(cue.Concrete(true)); err != nil {
		errs = append(errs, unknownFields(d, shapes[kind])...)
		cerrs := c.cueErrors(d, err, true)
		if kind == "Secret" {
			hideSecretValues(cerrs) // secret_values.go
		}
		return nil, append(errs, cerrs...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	base := d.v
	if d.closed {
		data, err := v.MarshalJSON()
		if err != nil {
			return nil, []Error{d.errorf(nil, "%v", err)}
		}
		expr, err := cuejson.Extract(d.file, data)
		if err != nil {
			return nil, []Error{d.errorf(nil, "%v", err)}
		}
		normalize(expr, "", "")
		base = c.ctx.BuildExpr(expr)
	}
	data, err := base.Unify(c.defaults[kind]).MarshalJSON()
	if err != nil {
		return nil, []Error{d.errorf(nil, "internal error: defaults: %v", err)}
	}
	return data, nil
}

// unknownFields names every field of d that its kind's shape lacks.
func unknownFields(d doc, s *shape) []Error {
	var errs []Error
	var walk func(v cue.Value, s *shape, path []any)
	walk = func(v cue.Value, s *shape, path []any) {
		switch {
		case s.fields != nil:
			it, err := v.Fields()
			if err != nil {
				return
			}
			for it.Next() {
				name := it.Selector().Unquoted()
				p := append(slices.Clip(path), name)
				child, ok := s.fields[name]
				if !ok {
					errs = append(errs, d.errorf(p, "%s", unknownFieldMsg(path, name)))
					continue
				}
				walk(it.Value(), child, p)
			}
		case s.elem != nil:
			it, err := v.List()
			if err != nil {
				return
			}
			for i := 0; it.Next(); i++ {
				walk(it.Value(), s.elem, append(slices.Clip(path), i))
			}
		}
	}
	walk(d.v, s, nil)
	return errs
}

// serverSet are the fields Capstan itself writes.
var serverSet = map[string]bool{
	"status": true, "metadata.uid": true, "metadata.resourceVersion": true, "metadata.generation": true,
	"metadata.creationTimestamp": true, "metadata.deletionTimestamp": true, "metadata.ownerReferences": true,
}

func unknownFieldMsg(parent []any, name string) string {
	full := formatPath(append(slices.Clip(parent), name))
	switch {
	case serverSet[full]:
		return fmt.Sprintf("field %q is set by Capstan and cannot come from Git", name)
	case full == "metadata.namespace":
		return "field \"namespace\" is not allowed: the kind is cluster-scoped"
	case name == "restartPolicy" && len(parent) >= 2 && (parent[len(parent)-2] == "containers" || parent[len(parent)-2] == "initContainers"):
		return "field \"restartPolicy\" is not allowed: Capstan does not support sidecar containers (a container's own restartPolicy); the pod's spec.restartPolicy applies"
	}
	return fmt.Sprintf("field %q is not allowed: Capstan does not know or support it", name)
}

// cueErrors converts CUE's errors into Errors located in d's file. With
// inDef, paths start with the definition's name, which is dropped.
func (c *compiled) cueErrors(d doc, err error, inDef bool) []Error {
	type group struct {
		path []string
		errs []cueerrors.Error
	}
	var groups []*group
	byPath := map[string]*group{}
	for _, e := range cueerrors.Errors(err) {
		p := e.Path()
		if inDef && len(p) > 0 && strings.HasPrefix(p[0], "#") {
			p = p[1:]
		}
		key := strings.Join(p, "\x00")
		g := byPath[key]
		if g == nil {
			g = &group{path: p}
			byPath[key] = g
			groups = append(groups, g)
		}
		g.errs = append(g.errs, e)
	}
	kind, _ := d.v.LookupPath(cue.ParsePath("kind")).String()
	var errs []Error
	for _, g := range groups {
		path := d.resolve(g.path)
		if inDef {
			// Unknown fields are reported by unknownFields, all at
			// once; CUE reports some of them only.
			if s := shapes[kind]; s != nil && len(path) > 0 && s.lookup(path) == nil {
				continue
			}
		}
		e := d.errorf(path, "%s", groupMsg(g.errs))
		if e.Line == 0 {
			for _, p := range cueerrors.Positions(g.errs[0]) {
				if p.Filename() == d.file {
					e.Line, e.Col = position(p)
					break
				}
			}
		}
		errs = append(errs, e)
	}
	return errs
}

// groupMsg phrases the errors CUE gives for one field. A failed disjunction
// (an enum) comes as a header followed by one conflict per alternative;
// they are folded into one message listing the alternatives.
func groupMsg(errs []cueerrors.Error) string {
	format, args := errs[0].Msg()
	if !strings.Contains(format, "empty disjunction") || len(errs) == 1 {
		return explain(fmt.Sprintf(format, args...))
	}
	var got string
	var want []string
	for _, e := range errs[1:] {
		format, args := e.Msg()
		if !strings.HasPrefix(format, "conflicting values %s and %s") || len(args) < 2 {
			return alternatives(errs[1:])
		}
		a, b := fmt.Sprint(args[0]), fmt.Sprint(args[1])
		switch {
		case got == "" || got == b:
			got = b
			want = append(want, a)
		case got == a:
			want = append(want, b)
		default:
			return alternatives(errs[1:])
		}
	}
	return fmt.Sprintf("invalid value %s (want %s)", got, strings.Join(want, " or "))
}

// explain rewrites CUE messages that quote the schema's regular
// expressions, or that say little, into what the user needs to know.
func explain(msg string) string {
	if msg == "field not allowed" { // a key failing a map's pattern
		return "invalid key"
	}
	if strings.HasPrefix(msg, "incompatible list lengths (0 and") {
		return "needs at least one item"
	}
	if strings.HasSuffix(msg, "(does not satisfy net.IP)") {
		return strings.TrimSuffix(msg, "(does not satisfy net.IP)") + "(want an IP address)"
	}
	if m := maxRunesRE.FindStringSubmatch(msg); m != nil {
		return strings.TrimSuffix(msg, m[0]) + "(want at most " + m[1] + " characters)"
	}
	for _, p := range patterns {
		bound := "(out of bound =~" + strconv.Quote(p.re) + ")"
		if strings.HasSuffix(msg, bound) {
			return strings.TrimSuffix(msg, bound) + "(want " + p.want + ")"
		}
	}
	return msg
}

// patterns describes the regular expressions of kinds.cue. A test checks
// each one appears there.
var patterns = []struct{ re, want string }{
	{`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, "a DNS label: lower-case letters, digits and '-', beginning and ending with a letter or digit"},
	{`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`, "a DNS subdomain: dot-separated DNS labels of lower-case letters, digits and '-'"},
	{labelKeyPattern, "a label key: an optional DNS subdomain and '/', then at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"},
	{`^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$`, "a label value: at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"},
	{`^[-._a-zA-Z0-9]+$`, "a key of letters, digits, '-', '_' or '.'"},
	{`[a-z]`, "at least one letter"},
	{`^[-._a-zA-Z][-._a-zA-Z0-9]*$`, "letters, digits, '-', '_' or '.', not beginning with a digit"},
	{`^[0-9]+%$`, "a percentage such as 25%"},
	{`^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$`, "a quantity such as 250m, 0.5, 128Mi or 1G"},
	{`^/`, "an absolute path"},
	{`^[-A-Za-z0-9]+$`, "an HTTP header name: letters, digits and '-'"},
}

// labelKeyPattern is the syntax of a label or annotation key.
const labelKeyPattern = `^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$`

// explainPattern says in words what the pattern re of kinds.cue wants.
func explainPattern(re string) string {
	for _, p := range patterns {
		if p.re == re {
			return p.want
		}
	}
	return "=~" + strconv.Quote(re)
}

// alternatives phrases the errors of the alternatives of a disjunction
// (a port number or name). An alternative of another type than the value
// says nothing useful ("mismatched types int and string") and is left out
// when another explains the problem.
func alternatives(errs []cueerrors.Error) string {
	var msgs, mismatched []string
	for _, e := range errs {
		format, args := e.Msg()
		msg := explain(fmt.Sprintf(format, args...))
		if strings.Contains(msg, "(mismatched types") {
			mismatched = append(mismatched, msg)
			continue
		}
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		msgs = mismatched
	}
	return strings.Join(msgs, "; or ")
}

var maxRunesRE = regexp.MustCompile(`\(does not satisfy strings\.MaxRunes\(([0-9]+)\)\)$`)

var yamlErrRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// syntaxError locates a YAML or JSON syntax error. The YAML decoder gives
// the line only, in its message ("file:12: did not find ...").
func syntaxError(file string, err error) Error {
	e := Error{File: file}
	if errs := cueerrors.Errors(err); len(errs) > 0 {
		if p := errs[0].Position(); p.IsValid() {
			e.Line, e.Col = position(p)
			format, args := errs[0].Msg()
			e.Msg = fmt.Sprintf(format, args...)
			return e
		}
	}
	msg := strings.TrimPrefix(err.Error(), file+":")
	if i := strings.IndexByte(msg, ':'); i > 0 {
		if n, err := strconv.Atoi(msg[:i]); err == nil {
			e.Line, msg = n, msg[i+1:]
		}
	}
	if m := yamlErrRE.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	e.Msg = "syntax error: " + strings.TrimSpace(msg)
	return e
}

// resolve turns the path of a CUE error into field names and list indexes,
// telling an index from a numeric key by looking at d.
func (d doc) resolve(path []string) []any {
	out := make([]any, 0, len(path))
	cur := d.v
	for _, s := range path {
		if u, err := strconv.Unquote(s); err == nil && strings.HasPrefix(s, `"`) {
			s = u
		}
		var sel cue.Selector
		if n, err := strconv.Atoi(s); err == nil && cur.Exists() && cur.IncompleteKind() == cue.ListKind {
			out = append(out, n)
			sel = cue.Index(n)
		} else {
			out = append(out, s)
			sel = cue.Str(s)
		}
		if cur.Exists() {
			cur = cur.LookupPath(cue.MakePath(sel))
		}
	}
	return out
}

// posOf returns the position of the deepest field of path that d has.
func (d doc) posOf(path []any) (line, col int) {
	cur := d.v
	best := d.v.Pos()
	for _, p := range path {
		var sel cue.Selector
		switch p := p.(type) {
		case int:
			sel = cue.Index(p)
		case string:
			sel = cue.Str(p)
		}
		cur = cur.LookupPath(cue.MakePath(sel))
		if !cur.Exists() {
			break
		}
		if pos := cur.Pos(); pos.IsValid() && pos.Filename() == d.file {
			best = pos
		}
	}
	if best.Filename() != d.file {
		return 0, 0
	}
	return position(best)
}

// has reports whether d sets the field at path, as written (before
// defaults).
func (d doc) has(path []any) bool {
	cur := d.v
	for _, p := range path {
		switch p := p.(type) {
		case int:
			cur = cur.LookupPath(cue.MakePath(cue.Index(p)))
		case string:
			cur = cur.LookupPath(cue.MakePath(cue.Str(p)))
		}
		if !cur.Exists() {
			return false
		}
	}
	return true
}

// errorf returns an Error at the field path of d.
func (d doc) errorf(path []any, format string, args ...any) Error {
	line, col := d.posOf(path)
	return Error{File: d.file, Line: line, Col: col, Field: formatPath(path), Msg: fmt.Sprintf(format, args...)}
}

func position(p token.Pos) (line, col int) {
	if !p.IsValid() {
		return 0, 0
	}
	pp := p.Position()
	return pp.Line, pp.Column
}
