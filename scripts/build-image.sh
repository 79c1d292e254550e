#!/bin/sh
# build-image.sh [NAME[:TAG]]: builds a tiny local image from Debian's
# busybox-static, with `podman import` (no registry, no container run).
# Default name: localhost/capstan-demo:latest. Does nothing when the image
# exists. Honours CONTAINERS_CONF (use the node's, from node/podman) but
# works with Podman's defaults too.
#
# The image has /bin/busybox with every applet linked into /bin (sh, httpd,
# sleep, cat, echo, nc, wget, ...), /etc/passwd and /etc/group, /tmp and
# /www. Pods need no extra image: Podman builds its infra image locally
# (localhost/podman-pause) from catatonit.
set -eu

IMAGE="${1:-localhost/capstan-demo:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"

die() { echo "build-image: $*" >&2; exit 1; }

command -v podman >/dev/null 2>&1 || die "podman is not installed (run scripts/install-deps.sh)"

if podman image exists "$IMAGE"; then
	echo "build-image: $IMAGE exists"
	exit 0
fi

[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (apt-get install busybox-static)"
# A dynamically linked busybox would need its libraries in the image.
if command -v file >/dev/null 2>&1 && file -L "$BUSYBOX" | grep -q 'dynamically linked'; then
	die "$BUSYBOX is dynamically linked; install busybox-static"
fi

ROOTFS="$(mktemp -d)"
trap 'rm -rf "$ROOTFS"' EXIT INT TERM

mkdir -p "$ROOTFS/bin" "$ROOTFS/sbin" "$ROOTFS/usr/bin" "$ROOTFS/usr/sbin" \
	"$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/www" "$ROOTFS/root" \
	"$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/dev" "$ROOTFS/run"
chmod 1777 "$ROOTFS/tmp"
cp "$BUSYBOX" "$ROOTFS/bin/busybox"
# --install -s makes a symlink per applet, in the dirs the applet belongs
# to; run inside the rootfs so the links point at /bin/busybox.
chroot "$ROOTFS" /bin/busybox --install -s || die "busybox --install failed"
cat >"$ROOTFS/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$ROOTFS/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo "capstan demo" >"$ROOTFS/www/index.html"

tar -C "$ROOTFS" -cf - . | podman import --quiet \
	--change 'CMD ["/bin/sh"]' \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'WORKDIR /' \
	- "$IMAGE" >/dev/null || die "podman import failed"
echo "build-image: built $IMAGE"
