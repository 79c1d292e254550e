#!/usr/bin/env bash
# Runs every fuzz target of the repository (each `func FuzzXxx` in a
# *_test.go) for FUZZTIME, one after another, and stops at the first
# failure, naming it. Go fuzzes one target per package per run, so each
# target gets its own `go test -fuzz`. A failing input is saved by Go in
# the package's testdata/fuzz/FuzzXxx/: commit it as a regression seed.
#
#   scripts/fuzz.sh                  every target, FUZZTIME each (5s)
#   scripts/fuzz.sh FuzzLoad ...     only these targets
#
# Environment: FUZZTIME (5s), FUZZMINIMIZETIME (1s: minimizing new inputs
# eats short runs; a failure is saved unminimized all the same), TAGS (the
# Makefile's build tags), GO (go).
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}
TAGS=${TAGS:-remote exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper containers_image_openpgp}
FUZZTIME=${FUZZTIME:-5s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-1s}

# "dir name" per target, skipping dot-directories, vendor and testdata.
targets=$(find . -mindepth 1 \( -type d \( -name '.*' -o -name vendor -o -name testdata \) -prune \) -o \
	-type f -name '*_test.go' -print |
	while read -r f; do
		sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$f" | sed "s|^|$(dirname "$f") |"
	done | sort -u)

if [ -z "$targets" ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0 skipped=0
while read -r dir name; do
	if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qxF "$name"; then
		continue
	fi
	echo "=== $name ($dir, $FUZZTIME)"
	set +e
	$GO test -tags "$TAGS" -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" \
		-fuzzminimizetime "$FUZZMINIMIZETIME" "$dir" </dev/null 2>&1 | tee "$log"
	status=${PIPESTATUS[0]}
	set -e
	if [ "$status" -ne 0 ]; then
		echo "fuzz.sh: $name in $dir FAILED (a failing input, if any, is saved in $dir/testdata/fuzz/$name/)" >&2
		exit "$status"
	fi
	if grep -q 'no fuzz tests to fuzz' "$log"; then
		echo "fuzz.sh: $name in $dir is not built with these tags: skipped"
		skipped=$((skipped + 1))
	else
		passed=$((passed + 1))
	fi
done <<<"$targets"

if [ $((passed + skipped)) -eq 0 ]; then
	echo "fuzz.sh: no target named $*" >&2
	exit 1
fi
echo "fuzz.sh: $passed targets passed, $skipped skipped"
