#!/bin/sh
# install-deps.sh: installs what a Capstan node needs on Debian 12, as root,
# without prompting: podman, runc (crun fails on hybrid cgroups), conmon,
# netavark and iptables (the network stack, for published ports),
# busybox-static (for scripts/build-image.sh), catatonit (Podman builds its
# pod infra image from it, with no registry), uidmap and slirp4netns.
# Idempotent: runs apt-get update and install only when something is missing.
set -eu

die() { echo "install-deps: $*" >&2; exit 1; }

PACKAGES="podman runc conmon netavark iptables busybox-static catatonit uidmap slirp4netns"

[ "$(id -u)" -eq 0 ] || die "must run as root"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian 12"
if [ -r /etc/os-release ]; then
	. /etc/os-release
	[ "${ID:-}" = debian ] || [ "${ID_LIKE:-}" != "${ID_LIKE#*debian}" ] ||
		echo "install-deps: warning: not Debian (${ID:-unknown}); trying anyway" >&2
fi

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=""
for p in $PACKAGES; do
	installed "$p" || missing="$missing $p"
done

if [ -z "$missing" ]; then
	echo "install-deps: all present:$(printf ' %s' $PACKAGES)"
else
	echo "install-deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || die "apt-get update failed"
	# shellcheck disable=SC2086 # word splitting intended
	apt-get install -y -q --no-install-recommends $missing ||
		die "apt-get install$missing failed"
fi

for cmd in podman runc conmon catatonit /bin/busybox; do
	command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ] || die "$cmd missing after install"
done
echo "install-deps: $(podman --version), $(runc --version | head -n1)"
