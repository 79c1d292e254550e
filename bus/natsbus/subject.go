package natsbus

import "strings"

// token makes s one subject token. Letters, digits, '-' and '_' stay;
// every other byte (a dot, a wildcard, whitespace, '=' itself) becomes '='
// and two hex digits, so "web.v1" is "web=2Ev1". The empty string is "_".
// The mapping only routes and filters; records keep their full names in
// their JSON, and readers compare those.
func token(s string) string {
	if s == "" {
		return "_"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xF])
	}
	return b.String()
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// eventSubject is where the events of one object go.
func eventSubject(kind, namespace, name, writer string) string {
	return eventObjectSubject(kind, namespace, name) + "." + token(writer)
}

// eventObjectSubject is the part of an event's subject naming the object;
// its last token, the writer, follows (and was missing before writers
// were named).
func eventObjectSubject(kind, namespace, name string) string {
	return "capstan.events." + token(namespace) + "." + token(kind) + "." + token(name)
}

// EventsSubjectOf is every subject writer may publish events on: its name
// is the subject's last token, so the server's permissions can hold a
// node to events under its own name.
func EventsSubjectOf(writer string) string { return "capstan.events.*.*.*." + token(writer) }

// auditSubject is where the audit records of one source go.
func auditSubject(source string) string {
	return "capstan.audit." + token(source)
}
