#!/usr/bin/env bash
# Builds the container image the KVM tests and the image benchmark run: an
# OCI layout made with Debian's umoci from that architecture's static
# busybox, in two layers (the second deletes a file of the first, so the
# import's whiteouts are exercised), then imports it with the build host's
# snapvm into an image store the test host reads.
#
#   pack-image.sh OCI_ARCH BUSYBOX SNAPVM STORE
#
# The image `web`: busybox httpd serving /www on TCP 8080 as user `app`
# (uid 1000, working dir /app, env GREETING); `sh`, `id`, `env` and friends
# for commands run in it.
set -euo pipefail
oci_arch=$1 busybox=$(realpath "$2") snapvm=$(realpath "$3") store=$(realpath -m "$4")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
umoci init --layout layout
umoci new --image layout:web
umoci unpack --image layout:web bundle >/dev/null
root=bundle/rootfs
mkdir -p "$root/bin" "$root/etc" "$root/app" "$root/www" "$root/tmp" "$root/home/app"
cp "$busybox" "$root/bin/busybox"
for tool in sh cat echo env id pwd ls sleep httpd printf test true false wc head grep mkdir rm touch stat uname; do
  ln -s busybox "$root/bin/$tool"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nstaff:x:50:app\n' > "$root/etc/group"
printf 'deleted by the second layer\n' > "$root/etc/secret"
chown 1000:1000 "$root/app" "$root/home/app"
chmod 1777 "$root/tmp"
umoci repack --image layout:web bundle
rm -rf bundle
umoci unpack --image layout:web bundle >/dev/null
rm "$root/etc/secret"
printf 'hello from a snapvm image\n' > "$root/www/index.html"
umoci repack --image layout:web bundle
umoci config --image layout:web --architecture "$oci_arch" --os linux \
  --config.entrypoint /bin/httpd --config.cmd -f --config.cmd -p --config.cmd 8080 --config.cmd -h --config.cmd /www \
  --config.env GREETING=hello-from-the-image --config.env PATH=/bin \
  --config.workingdir /app --config.user app --config.exposedports 8080/tcp
# The image is for the test host's architecture, which may not be this machine's.
"$snapvm" image import layout web --store "$store" --allow-other-arch >/dev/null
