#!/usr/bin/env bash
# Builds the agent image (default bidmesh/agent:local) OFFLINE: nothing is pulled. The root
# filesystem is assembled from this host — its node binary and the shared libraries that
# node and the native addons link against — plus the project's production node modules,
# src/ and bin/, then loaded with `docker import`.
#
# Why this works without a registry: better-sqlite3 (and msgpackr-extract) are native addons
# built against this host's glibc, and the image carries this host's glibc, so they load.
# The image is therefore tied to the host's architecture and C library; users with a
# registry build the portable one from agent/Dockerfile instead.
#
# Usage: scripts/build-agent-image.sh [IMAGE]      (default: $BIDMESH_IMAGE or bidmesh/agent:local)
#        --check   only verify that `docker run --rm IMAGE --help` works
set -euo pipefail
cd "$(dirname "$0")/.."
project=$(pwd)

log() { printf '[build-agent-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_only=0
image=${BIDMESH_IMAGE:-bidmesh/agent:local}
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $arg" ;;
    *) image=$arg ;;
  esac
done

verify() {
  local out
  if ! out=$(docker run --rm --network none "$image" --help 2>&1); then
    printf '%s\n' "$out" >&2
    die "docker run --rm $image --help failed"
  fi
  grep -q 'agent' <<<"$out" || { printf '%s\n' "$out" >&2; die "unexpected --help output from $image"; }
  log "verified: docker run --rm $image --help"
}

command -v docker >/dev/null 2>&1 || die "docker is not installed (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd, or run scripts/setup.sh)"
if [ "$check_only" = 1 ]; then verify; exit 0; fi

node_bin=$(command -v node) || die "node is not on PATH: Node 20 or newer is needed on the build host"
node_bin=$(readlink -f "$node_bin")
node_major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node $("$node_bin" -v) is too old: Node 20 or newer is needed"
[ -d node_modules ] || die "node_modules is missing: run npm ci (or scripts/setup.sh) first"
command -v ldd >/dev/null 2>&1 || die "ldd is missing (apt-get install libc-bin)"

root=$(mktemp -d "${TMPDIR:-/tmp}/bidmesh-agent-root.XXXXXX")
trap 'rm -rf "$root"' EXIT
log "assembling the root filesystem in $root"

# Copies a host file to the same path inside the root, following symlinks, so the loader
# finds every library where ldd found it on the host.
copy_host_file() {
  local src=$1 dest=$root$1
  [ -e "$dest" ] && return 0
  mkdir -p "$(dirname "$dest")"
  cp -L --preserve=mode "$src" "$dest"
}

# Every shared library (and the program interpreter) a binary needs, one path per line.
# An addon this host's loader cannot load (a musl prebuild next to the glibc one) is skipped:
# node would not load it here either.
shared_libs() {
  local out rc=0
  out=$(ldd "$1" 2>&1) || rc=$?
  case "$out" in *'not a dynamic executable'*|*'statically linked'*) return 0 ;; esac
  if [ "$rc" != 0 ] || grep -q 'not found' <<<"$out"; then
    [ "${2:-}" = optional ] && { log "skipping ${1#"$root"/}: not loadable on this host"; return 0; }
    printf '%s\n' "$out" >&2
    die "$1 needs a library this host lacks"
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }' <<<"$out"
}

# -- 1. the project: package files, src, bin, production node modules ----------------------
mkdir -p "$root/app"
cp package.json package-lock.json "$root/app/"
tar -C "$project" -c --exclude='*.test.ts' src bin | tar -C "$root/app" -x

# Production dependencies only (what `npm ci --omit=dev` would install), as reported by npm.
# A path inside another kept path is dropped, since copying the parent brings it along.
# When npm cannot tell (no npm, broken tree), the whole node_modules is copied.
modules=()
if command -v npm >/dev/null 2>&1 && listing=$(npm ls --omit=dev --all --parseable 2>/dev/null) && [ -n "$listing" ]; then
  mapfile -t modules < <(printf '%s\n' "$listing" | tail -n +2 | sed "s#^$project/##" | grep '^node_modules/' | sort -u \
    | awk 'BEGIN { last = "" } { if (last != "" && index($0, last "/") == 1) next; print; last = $0 }')
fi
if [ ${#modules[@]} -gt 0 ]; then
  log "copying ${#modules[@]} production packages"
else
  log "npm could not list production packages; copying all of node_modules"
  modules=(node_modules)
fi
# Build leftovers of native addons (object files, vendored C sources) are not needed at run time.
tar -C "$project" -c \
  --exclude='node_modules/.cache' --exclude='*/build/Release/obj' --exclude='*/build/Release/obj.target' \
  --exclude='*/build/Release/.deps' --exclude='node_modules/better-sqlite3/deps' --exclude='node_modules/better-sqlite3/src' \
  "${modules[@]}" | tar -C "$root/app" -x
[ -f "$root/app/node_modules/tsx/package.json" ] || die "tsx is missing from the production modules (the agent runs TypeScript through it)"

# -- 2. the runtime: node, /usr/bin/env (for the bin's shebang), and their libraries ------------
mkdir -p "$root/usr/local/bin" "$root/usr/bin"
cp -L --preserve=mode "$node_bin" "$root/usr/local/bin/node"
env_bin=$(readlink -f "$(command -v env)")
# bin/bidmesh.js's shebang passes node flags through `env -S` (GNU coreutils 8.30 or later;
# BusyBox's env lacks it): refuse to build an image whose `bidmesh` would not start.
"$env_bin" -S true 2>/dev/null || die "$env_bin does not support -S (bin/bidmesh.js's shebang needs it): build on a host with GNU coreutils 8.30 or later"
cp -L --preserve=mode "$env_bin" "$root/usr/bin/env"
# `node` on PATH for `#!/usr/bin/env node`, and `bidmesh` for `docker exec ... bidmesh nodes`.
chmod 0755 "$root/app/bin/bidmesh.js"
ln -s /app/bin/bidmesh.js "$root/usr/local/bin/bidmesh"

addons=()
while IFS= read -r -d '' addon; do addons+=("$addon"); done \
  < <(find "$root/app/node_modules" -type f -name '*.node' ! -name '*musl*' -print0)
libs=$( { shared_libs "$node_bin"; shared_libs "$env_bin"; for a in "${addons[@]}"; do shared_libs "$a" optional; done; } | sort -u)
for lib in $libs; do copy_host_file "$lib"; done
log "runtime: node $("$node_bin" -v) with $(wc -w <<<"$libs") shared libraries"

# -- 3. the rest of a minimal system -------------------------------------------------------
mkdir -p "$root/etc" "$root/tmp" "$root/var/lib/bidmesh" "$root/proc" "$root/sys" "$root/dev" "$root/root"
chmod 1777 "$root/tmp"
chmod 0700 "$root/var/lib/bidmesh"
# root runs the agent (it needs the Docker socket); nobody exists for tools that look it up.
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
# Docker bind-mounts /etc/hosts and /etc/resolv.conf; look names up in that order.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"

# -- 4. import -----------------------------------------------------------------------------
version=$("$node_bin" -p 'require("./package.json").version')
log "importing $image ($(du -sh "$root" | cut -f1))"
tar -C "$root" --numeric-owner --owner=0 --group=0 -c . | docker import \
  -c 'ENTRYPOINT ["/usr/local/bin/node","--max-semi-space-size=2","--v8-pool-size=1","/app/bin/bidmesh.js"]' \
  -c 'CMD ["agent","--data-dir","/var/lib/bidmesh","--listen","/ip4/0.0.0.0/tcp/7701","--api","127.0.0.1:7700"]' \
  -c 'WORKDIR /app' \
  -c 'ENV NODE_ENV=production' \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  -c 'ENV BIDMESH_DATA_DIR=/var/lib/bidmesh' \
  -c 'EXPOSE 7701' \
  -c "LABEL org.opencontainers.image.title=bidmesh-agent org.opencontainers.image.version=$version" \
  -m "bidmesh agent $version, assembled offline by scripts/build-agent-image.sh" \
  - "$image" >/dev/null
verify
log "built $image"
