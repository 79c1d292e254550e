#!/bin/sh
# demo-repo.sh DIR: makes DIR a git repository holding manifests/demo, unless
# it is one already (your edits and commits there are kept).
set -eu
DIR="${1:?usage: demo-repo.sh DIR}"
SRC="$(cd "$(dirname "$0")/../manifests/demo" && pwd)"
if [ -d "$DIR/.git" ]; then
	echo "demo-repo: $DIR exists; keeping it"
	exit 0
fi
mkdir -p "$DIR"
cp "$SRC"/*.yaml "$DIR"/
cd "$DIR"
git init -q -b main
git add -A
git -c user.name="Capstan demo" -c user.email="demo@capstan.invalid" commit -q -m "Bundled demo: web and worker"
echo "demo-repo: created $DIR"
