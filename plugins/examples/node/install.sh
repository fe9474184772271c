#!/bin/sh
# install.sh DEST PLUGIN_DIR — installs the nodetoken provider into DEST (its code, the protocol
# definitions it loads and its npm dependencies, from package-lock.json) and writes
# PLUGIN_DIR/mailintake-auth-nodetoken: a wrapper that checks every file in DEST against the hashes
# taken at install time, then runs the provider with the node found now. Pin the wrapper's SHA-256
# in the server's config: since the wrapper carries the hash of DEST's file list, the pin covers
# every file the provider loads. Run it as the user that owns DEST (root in production); NODE
# names another node executable.
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 DEST PLUGIN_DIR" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
node=${NODE:-$(command -v node || true)}
if [ -z "$node" ] || ! command -v npm >/dev/null 2>&1; then
	echo "$0: needs Node.js 18 or later and npm (Debian: apt-get install nodejs npm)" >&2
	exit 1
fi
node=$(cd "$(dirname "$node")" && pwd)/$(basename "$node")
mkdir -p "$1" "$2"
dest=$(cd "$1" && pwd)
plugindir=$(cd "$2" && pwd)
case "$dest$plugindir$node" in
*"'"* | *"
"*)
	echo "$0: paths with quotes or newlines are not supported" >&2
	exit 1
	;;
esac

# A fresh copy: nothing of an earlier install stays.
rm -rf "$dest/lib" "$dest/proto" "$dest/node_modules" "$dest/SHA256SUMS"
cp "$here/package.json" "$here/package-lock.json" "$here/mailintake-auth-nodetoken" "$dest/"
cp -R "$here/lib" "$dest/lib"
for f in authplugin/v1/authplugin.proto third_party/google/rpc/status.proto third_party/grpc/health/v1/health.proto \
	third_party/hashicorp/go-plugin/grpc_controller.proto third_party/hashicorp/go-plugin/grpc_stdio.proto; do
	to="$dest/proto/${f#third_party/}"
	mkdir -p "$(dirname "$to")"
	cp "$repo/proto/$f" "$to"
done
# Install scripts are not needed (protobufjs's only checks its CLI's dependencies).
(cd "$dest" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)

# The hashes: every file, and the list of files itself, so that a file added later (a module
# that shadows a dependency) is refused as well as a changed one.
cd "$dest"
sums=$(LC_ALL=C find . -type f ! -path ./SHA256SUMS | LC_ALL=C sort | xargs -d '\n' sha256sum)
printf '%s\n' "$sums" >SHA256SUMS
sums=$(sha256sum SHA256SUMS | cut -d' ' -f1)
list=$(LC_ALL=C find . -type f ! -path ./SHA256SUMS | LC_ALL=C sort | sha256sum | cut -d' ' -f1)

wrapper="$plugindir/mailintake-auth-nodetoken"
cat >"$wrapper.tmp" <<EOF
#!/bin/sh
# mailintake-auth-nodetoken, written by plugins/examples/node/install.sh: checks the provider
# installed in $dest against the hashes taken when it was installed, then runs it. A pin of this
# file's SHA-256 covers every file the provider loads.
cd '$dest' || exit 1
fail() {
	printf '{"@level":"error","@message":"nodetoken: %s; refusing to run it (reinstall with install.sh, then pin the new wrapper)"}\n' "\$1" >&2
	exit 1
}
echo '$sums  SHA256SUMS' | sha256sum --quiet --strict -c - >/dev/null 2>&1 || fail 'SHA256SUMS in $dest changed'
bad=\$(sha256sum --quiet --strict -c SHA256SUMS 2>/dev/null | tr '\n' ' ')
[ -z "\$bad" ] || fail "files in $dest changed: \$bad"
[ "\$(LC_ALL=C find . -type f ! -path ./SHA256SUMS | LC_ALL=C sort | sha256sum | cut -d' ' -f1)" = '$list' ] ||
	fail 'files were added to or removed from $dest'
# Nothing from the server's environment decides what node loads.
unset NODE_OPTIONS NODE_PATH
exec '$node' '$dest/mailintake-auth-nodetoken'
EOF
chmod 755 "$wrapper.tmp"
mv "$wrapper.tmp" "$wrapper"
echo "installed $dest; wrapper $wrapper, SHA-256 $(sha256sum "$wrapper" | cut -d' ' -f1)"
