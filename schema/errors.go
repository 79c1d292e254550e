package schema

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Error is one problem in one manifest file.
type Error struct {
	// File is the path of the file, as given to Load.
	File string
	// Line and Col locate the problem in File, counting from 1. For a
	// field they point at its key; for a missing field, at the nearest
	// enclosing field that exists. Zero means unknown.
	Line, Col int
	// Field is the path of the offending field within its object, such as
	// spec.template.spec.containers[0].image or
	// metadata.labels["app.kubernetes.io/name"]; empty for a problem of the
	// file as a whole, such as a syntax error.
	Field string
	// Msg says what is wrong.
	Msg string
}

// Error formats e as file:line:col: field: message, leaving out what is
// unknown.
func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is the error Load returns: every problem found, sorted by file
// (in the order given) and position.
type ErrorList struct {
	Errors []Error
}

// Error formats the list one error per line.
func (l *ErrorList) Error() string {
	lines := make([]string, len(l.Errors))
	for i, e := range l.Errors {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// formatPath writes a path of field names (string) and list indexes (int)
// the way kubectl explain and jq do: spec.containers[0].name, with keys
// that are not identifiers quoted: metadata.labels["app.kubernetes.io/name"].
func formatPath(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		case string:
			if identRE.MatchString(p) {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(p)
			} else {
				b.WriteString("[" + strconv.Quote(p) + "]")
			}
		}
	}
	return b.String()
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
