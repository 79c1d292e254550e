package schema

import (
	"regexp"
	"strings"
)

// A Secret's values are never quoted in an error: the errors of a
// revision reach the audit stream, events, notifications, the Source's
// status and CI logs. CUE's messages quote the value ("conflicting values
// 123456 and string"), so under a Secret's data and stringData only the
// types are kept.

var mismatchedTypes = regexp.MustCompile(`\(mismatched types [a-z]+ and [a-z]+\)`)

// hideSecretValues rewrites the messages of errs (a Secret's) that are
// about a value of its data or stringData.
func hideSecretValues(errs []Error) {
	for i, e := range errs {
		if !secretValueField(e.Field) || e.Msg == "invalid key" {
			continue
		}
		msg := "invalid value"
		if m := mismatchedTypes.FindString(e.Msg); m != "" {
			msg += " " + m
		}
		errs[i].Msg = msg + " (a Secret's values are not shown)"
	}
}

func secretValueField(field string) bool {
	for _, f := range []string{"data", "stringData"} {
		if field == f || strings.HasPrefix(field, f+".") || strings.HasPrefix(field, f+"[") {
			return true
		}
	}
	return false
}
