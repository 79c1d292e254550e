package schema

import (
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	"cuelang.org/go/cue/parser"

	"github.com/capstan-io/capstan/manifests"
)

//go:embed cue/*.cue
var cueFiles embed.FS

// schemaDir prefixes the file names of the embedded definitions in CUE
// positions. No manifest path starts with "$", so positions in the schema
// are never mistaken for positions in a user's file.
const schemaDir = "$schema/"

// compiled is the schema built in one cue.Context. A cue.Context is not safe
// for concurrent use, and values of different contexts cannot be unified,
// so each worker of Load takes a whole compiled from the pool.
type compiled struct {
	ctx      *cue.Context
	defs     map[string]cue.Value // closed definition by kind
	defaults map[string]cue.Value // defaults by kind
}

// pool holds compiled schemas for reuse. A sync.Pool rather than one
// package-level context: it makes Load safe for concurrent use without a
// lock, and, because the pool drops idle entries at garbage collection, it
// bounds what a long-lived context accumulates (CUE interns every label it
// has seen). Compiling costs about a millisecond.
var pool = sync.Pool{New: func() any { return mustCompile() }}

// gitKinds are the kinds read from Git, in manifests' order.
var gitKinds = func() []string {
	var ks []string
	for _, k := range manifests.Kinds() {
		if k.FromGit {
			ks = append(ks, k.Kind)
		}
	}
	return ks
}()

// shapes are the field trees of the definitions, by kind. They are plain Go
// data derived once from the CUE, shared by all goroutines.
var (
	shapesOnce sync.Once
	shapes     map[string]*shape
)

// mustCompile builds the embedded schema in a new context. The schema is
// part of the binary and tested, so failing to build it is a programming
// error.
func mustCompile() *compiled {
	c, err := compile()
	if err != nil {
		panic("schema: embedded CUE does not build: " + err.Error())
	}
	return c
}

func compile() (*compiled, error) {
	ctx := cuecontext.New()
	inst := build.NewContext().NewInstance("", nil)
	names, err := fs.Glob(cueFiles, "cue/*.cue")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		src, err := cueFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(schemaDir+name[len("cue/"):], src)
		if err != nil {
			return nil, err
		}
		if err := inst.AddSyntax(f); err != nil {
			return nil, err
		}
	}
	root := ctx.BuildInstance(inst)
	if err := root.Err(); err != nil {
		return nil, err
	}
	c := &compiled{ctx: ctx, defs: map[string]cue.Value{}, defaults: map[string]cue.Value{}}
	for _, kind := range gitKinds {
		def := root.LookupPath(cue.MakePath(cue.Def(kind)))
		if !def.Exists() {
			return nil, fmt.Errorf("no definition #%s", kind)
		}
		dflt := root.LookupPath(cue.MakePath(cue.Str("defaults"), cue.Str(kind)))
		if !dflt.Exists() {
			return nil, fmt.Errorf("no defaults for %s", kind)
		}
		c.defs[kind], c.defaults[kind] = def, dflt
	}
	shapesOnce.Do(func() {
		shapes = map[string]*shape{}
		for kind, def := range c.defs {
			shapes[kind] = shapeOf(def)
		}
	})
	return c, nil
}

// shape is the field tree of a definition: which fields an object may
// have. CUE reports a field the definition does not allow only while the
// rest of its struct is valid, so Load walks the shape itself to name every
// unknown field at once.
type shape struct {
	kind   cue.Kind
	fields map[string]*shape // an object's fields; nil for a map or a scalar
	elem   *shape            // a list's elements
}

// isMap reports whether s is a struct whose keys are free (labels, data),
// their syntax left to the CUE pattern constraints.
func (s *shape) isMap() bool { return s.kind == cue.StructKind && s.fields == nil }

func shapeOf(v cue.Value) *shape {
	s := &shape{kind: v.IncompleteKind()}
	switch s.kind {
	case cue.StructKind:
		it, err := v.Fields(cue.Optional(true))
		if err != nil {
			return s
		}
		for it.Next() {
			if s.fields == nil {
				s.fields = map[string]*shape{}
			}
			s.fields[it.Selector().Unquoted()] = shapeOf(it.Value())
		}
	case cue.ListKind:
		s.elem = shapeOf(v.LookupPath(cue.MakePath(cue.AnyIndex)))
	}
	return s
}

// lookup returns the shape at path, or nil when path leaves the shape.
func (s *shape) lookup(path []any) *shape {
	for _, p := range path {
		if s == nil {
			return nil
		}
		switch p := p.(type) {
		case int:
			s = s.elem
		case string:
			if s.isMap() {
				return &shape{kind: cue.TopKind}
			}
			s = s.fields[p]
		}
	}
	return s
}
