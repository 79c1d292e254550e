package manifests

import (
	"fmt"
	"strconv"
	"strings"
)

// FieldPath is a parsed field path: each element is a string (an object
// key) or an int (a list index).
type FieldPath []any

// ParseFieldPath parses a field path as the history prints them:
// "spec.replicas", "spec.template.spec.containers[0].image", with keys
// holding dots or slashes quoted: `metadata.annotations["example.com/x"]`.
func ParseFieldPath(s string) (FieldPath, error) {
	var p FieldPath
	i := 0
	bad := func(why string) (FieldPath, error) {
		return nil, fmt.Errorf("field path %q: %s at offset %d", s, why, i)
	}
	if s == "" {
		return bad("empty")
	}
	for i < len(s) {
		switch {
		case s[i] == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return bad("unclosed [")
			}
			in := s[i+1 : i+end]
			if strings.HasPrefix(in, `"`) {
				// A quoted key may hold "]": find the closing quote.
				q, err := strconv.QuotedPrefix(s[i+1:])
				if err != nil || i+1+len(q) >= len(s) || s[i+1+len(q)] != ']' {
					return bad("bad quoted key")
				}
				k, _ := strconv.Unquote(q)
				p = append(p, k)
				i += len(q) + 2
			} else {
				n, err := strconv.Atoi(in)
				if err != nil || n < 0 {
					return bad("want a list index or a quoted key in []")
				}
				p = append(p, n)
				i += end + 1
			}
		case s[i] == '.':
			if len(p) == 0 || i+1 >= len(s) || s[i+1] == '.' || s[i+1] == '[' {
				return bad("misplaced .")
			}
			i++
		default:
			if len(p) > 0 && s[i-1] != '.' {
				return bad("want . or [ between fields")
			}
			j := i
			for j < len(s) && s[j] != '.' && s[j] != '[' {
				j++
			}
			p = append(p, s[i:j])
			i = j
		}
	}
	return p, nil
}

// String formats p as ParseFieldPath reads it.
func (p FieldPath) String() string {
	var b strings.Builder
	for i, e := range p {
		switch e := e.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", e)
		case string:
			if strings.ContainsAny(e, `.[]"`) || e == "" {
				b.WriteString("[" + strconv.Quote(e) + "]")
				continue
			}
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(e)
		}
	}
	return b.String()
}
