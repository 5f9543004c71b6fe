#!/usr/bin/env bash
# Verifies agent/Dockerfile, unchanged, on a host without an image registry:
#
#   1. base:  when the image node:20-bookworm-slim is not on the engine, creates a stand-in
#             under that tag: Debian bookworm (debootstrap --variant=minbase, from the Debian
#             mirror) with this host's Node 20 binary and headers in /usr/local, npm (the
#             version Node 20 bundles, from the npm registry), a `node` user (1000) and the
#             same ENTRYPOINT and CMD as the official image; when this host's node trusts an
#             extra CA (NODE_EXTRA_CA_CERTS or npm's cafile, e.g. a TLS-inspecting proxy's),
#             the stand-in trusts it too, so the build's npm reaches the registry as the host's does;
#   2. build: `docker build -f agent/Dockerfile .` with the classic builder (it uses the local
#             base and never pulls; BuildKit needs buildx, which Debian's docker.io 20.10 lacks);
#             the deps stage reaches the Debian mirror and the npm registry through the build's
#             network, and GitHub (better-sqlite3's prebuilt binaries) not at all, so the addon
#             is compiled from source;
#   3. run:   `IMAGE --help`; an agent started from the image with the host's Docker socket
#             comes up healthy (GET /healthz) and runs a job (bidmesh/busybox:latest) to
#             `succeeded` through the CLI inside its container; `docker stop` drains it;
#   4. cleans up everything it created: the agent container, job containers left by it, the
#             built image and the build's intermediate images, the stand-in base (only if this
#             run created it) and its temporary directory.
#
# It prints the time of each step and ends with `verify-agent-dockerfile: OK in N s`.
#
# Usage: scripts/verify-agent-dockerfile.sh [--keep-base] [--keep-image]
#   --keep-base   leave a stand-in base this run created (later runs then skip step 1)
#   --keep-image  leave the built image, tagged $VERIFY_IMAGE (default bidmesh/agent:dockerfile)
# Environment: DEBIAN_MIRROR (http://deb.debian.org/debian), NPM_VERSION (10.8.2, the npm of
# Node 20), DOCKER_BUILDKIT (0), BIDMESH_TEST_IMAGE.
# Needs root (debootstrap, chroot) unless the base image already exists.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[verify-agent-dockerfile] %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

keep_base=0 keep_image=0
for arg in "$@"; do
  case "$arg" in
    --keep-base) keep_base=1 ;;
    --keep-image) keep_image=1 ;;
    -h|--help) sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $arg (see --help)" ;;
  esac
done

base=node:20-bookworm-slim
job_image=${BIDMESH_TEST_IMAGE:-bidmesh/busybox:latest}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
npm_version=${NPM_VERSION:-10.8.2}
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
run_id=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
image=${VERIFY_IMAGE:-bidmesh/agent:verify-$run_id}
[ "$keep_image" = 1 ] && image=${VERIFY_IMAGE:-bidmesh/agent:dockerfile}
agent=bidmesh-verify-$run_id

started=$SECONDS step_started=$SECONDS
timings=()
step_done() { timings+=("$1 $((SECONDS - step_started)) s"); log "$1 done in $((SECONDS - step_started)) s"; step_started=$SECONDS; }

command -v docker >/dev/null 2>&1 || die "docker is not installed (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd, or run scripts/setup.sh)"
docker image inspect "$job_image" >/dev/null 2>&1 || die "job image $job_image is missing: run 'bash scripts/setup.sh'"

# -- clean-up: only what this run created --------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/bidmesh-verify.XXXXXX")
created_base=0
build_ids=()
images_before=$(docker images -aq | sort -u)
base_id='' peer_id=''
cleanup() {
  local rc=$?
  set +e
  if docker container inspect "$agent" >/dev/null 2>&1; then
    [ -z "$peer_id" ] && peer_id=$(docker logs "$agent" 2>/dev/null | sed -n 's/^bidmesh agent //p' | tail -1)
    [ "$rc" = 0 ] || { log "last lines of the agent's log:"; docker logs --tail 30 "$agent" 2>&1 | sed 's/^/  | /' >&2; }
    docker rm -f "$agent" >/dev/null 2>&1
  fi
  if [ -n "$peer_id" ]; then
    local left
    left=$(docker ps -aq --filter label=bidmesh.managed=true --filter "label=bidmesh.node=$peer_id")
    # shellcheck disable=SC2086 # one id per word
    [ -z "$left" ] || docker rm -f $left >/dev/null 2>&1
  fi
  if [ "$keep_image" = 0 ]; then
    docker image inspect "$image" >/dev/null 2>&1 && docker rmi "$image" >/dev/null 2>&1
    # The build's intermediate images (both stages), newest first; never one that existed
    # before this run (a cache hit on someone else's build).
    local i id
    for ((i = ${#build_ids[@]} - 1; i >= 0; i--)); do
      id=${build_ids[$i]}
      grep -qx "$id" <<<"$images_before" && continue
      [ "$id" = "$base_id" ] && continue   # the FROM line's image: the base, handled below
      docker rmi "$id" >/dev/null 2>&1
    done
  fi
  if [ "$created_base" = 1 ] && [ "$keep_base" = 0 ]; then
    docker rmi "$base" >/dev/null 2>&1 || log "warning: could not remove the stand-in $base"
  fi
  if [ "$rc" != 0 ] && [ -s "$work/build.log" ]; then
    cp "$work/build.log" "${TMPDIR:-/tmp}/bidmesh-verify-agent-dockerfile.build.log"
    log "the build's log is kept in ${TMPDIR:-/tmp}/bidmesh-verify-agent-dockerfile.build.log"
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- 1. the base image -----------------------------------------------------------------------------
if docker image inspect "$base" >/dev/null 2>&1; then
  log "using the existing $base ($(docker image inspect -f '{{index .Config.Labels "bidmesh.stand-in"}}' "$base" | sed 's/^$/not a stand-in/'))"
else
  [ "$(id -u)" = 0 ] || die "$base is missing and creating a stand-in needs root (debootstrap)"
  if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing"
    log "installing debootstrap"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  node_bin=$(readlink -f "$(command -v node)") || die "node is not on PATH"
  node_version=$("$node_bin" -p process.versions.node)
  [ "${node_version%%.*}" = 20 ] || die "the stand-in needs this host's node to be Node 20 (it is $node_version)"
  headers=''
  for dir in "$(dirname "$(dirname "$node_bin")")/include/node" /usr/include/node /usr/local/include/node; do
    [ -f "$dir/node_version.h" ] && grep -q "define NODE_MINOR_VERSION $(cut -d. -f2 <<<"$node_version")\$" "$dir/node_version.h" && { headers=$dir; break; }
  done
  [ -n "$headers" ] || die "no headers of node $node_version on this host (the official image has them in /usr/local/include/node)"

  root=$work/rootfs
  log "creating a stand-in for $base: debootstrap bookworm from $mirror, node $node_version, npm $npm_version"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

  # Like debian:bookworm-slim: deb822 sources for bookworm, -updates and -security, no
  # package lists or downloaded packages in the image.
  rm -f "$root/etc/apt/sources.list"
  security=${DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}
  printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$security" > "$root/etc/apt/sources.list.d/debian.sources"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log

  # Like the official image: node, its headers (node-gyp compiles against them) and npm in
  # /usr/local, and the user node (1000).
  install -D -m 0755 "$node_bin" "$root/usr/local/bin/node"
  ln -s node "$root/usr/local/bin/nodejs"
  mkdir -p "$root/usr/local/include" "$root/usr/local/lib/node_modules"
  cp -a "$headers" "$root/usr/local/include/node"
  if (cd "$work" && npm pack --silent "npm@$npm_version" >/dev/null 2>"$work/npm-pack.log"); then
    mkdir -p "$root/usr/local/lib/node_modules/npm"
    tar -xzf "$work/npm-$npm_version.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  else
    host_npm=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
    log "note: npm $npm_version could not be fetched ($(tail -1 "$work/npm-pack.log")); using this host's npm from $host_npm"
    cp -a "$host_npm" "$root/usr/local/lib/node_modules/npm"
  fi
  # This host's extra TLS trust, for the npm registry as this host reaches it.
  extra_ca=${NODE_EXTRA_CA_CERTS:-}
  [ -n "$extra_ca" ] || extra_ca=$(npm config get cafile 2>/dev/null || true)
  ca_env=()
  if [ -n "$extra_ca" ] && [ "$extra_ca" != null ] && [ -f "$extra_ca" ]; then
    install -D -m 0644 "$extra_ca" "$root/usr/local/share/bidmesh-verify/extra-ca.crt"
    ca_env=(-c 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/bidmesh-verify/extra-ca.crt')
    log "the stand-in trusts this host's extra CA bundle $extra_ca (NODE_EXTRA_CA_CERTS)"
  fi
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  chroot "$root" groupadd --gid 1000 node
  chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  # The official entrypoint: a first argument that is an option or not a command goes to node.
  cat > "$root/usr/local/bin/docker-entrypoint.sh" <<'SH'
#!/bin/sh
set -e
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi
exec "$@"
SH
  chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh"

  tar -C "$root" --numeric-owner -c . | docker import \
    -c "ENV NODE_VERSION=$node_version" \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    -c 'CMD ["node"]' "${ca_env[@]}" \
    -c "LABEL bidmesh.stand-in=\"debootstrap bookworm minbase + host node $node_version + npm, by scripts/verify-agent-dockerfile.sh\"" \
    -m "stand-in for $base made offline by scripts/verify-agent-dockerfile.sh" \
    - "$base" >/dev/null
  created_base=1
  rm -rf "$root"
  smoke=$(docker run --rm --network none "$base" sh -c 'node --version && npm --version && id node') \
    || die "the stand-in $base does not run node and npm"
  log "stand-in ready: $(tr '\n' ' ' <<<"$smoke")"
  step_done "stand-in base"
fi

# -- 2. build agent/Dockerfile as it is ------------------------------------------------------------
base_id=$(docker image inspect -f '{{.Id}}' "$base" | sed 's/^sha256://' | cut -c1-12)
log "building agent/Dockerfile as $image (DOCKER_BUILDKIT=$DOCKER_BUILDKIT; log: $work/build.log)"
build_rc=0
docker build --force-rm -f agent/Dockerfile -t "$image" . >"$work/build.log" 2>&1 || build_rc=$?
mapfile -t build_ids < <(sed -n 's/^ ---> \([0-9a-f]\{12\}\)$/\1/p' "$work/build.log")
if [ "$build_rc" != 0 ]; then
  tail -40 "$work/build.log" >&2
  die "docker build -f agent/Dockerfile failed (exit $build_rc)"
fi
grep -q 'pull access denied\|Pulling from' "$work/build.log" && die "the build tried to pull an image"
grep -q 'Exit handler never called' "$work/build.log" && die "npm stopped half-way (Exit handler never called) and the build went on"
# node-gyp leaves build/config.gypi behind; a prebuilt binary comes without it.
how=$(docker run --rm --network none --entrypoint sh "$image" -c 'test -f node_modules/better-sqlite3/build/config.gypi && echo compiled from source || echo prebuilt')
log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%d MB", $1 / 1e6 }'); better-sqlite3 $how)"
step_done "docker build"

# -- 3. run it --------------------------------------------------------------------------------------
help=$(docker run --rm --network none "$image" --help 2>&1) || { printf '%s\n' "$help" >&2; die "$image --help failed"; }
if ! grep -q 'agent' <<<"$help" || ! grep -q 'run' <<<"$help"; then printf '%s\n' "$help" >&2; die "unexpected --help output"; fi
# The native addon loads in the image (the agent opens its store with it at start anyway).
docker run --rm --network none --entrypoint node "$image" -e "new (require('better-sqlite3'))(':memory:').prepare('select 1').get()" \
  || die "better-sqlite3 does not load in $image"
log "--help works; better-sqlite3 loads"

docker run -d --name "$agent" --label bidmesh.verify=agent-dockerfile --stop-timeout 45 \
  -v /var/run/docker.sock:/var/run/docker.sock \
  "$image" agent --data-dir /var/lib/bidmesh --listen /ip4/0.0.0.0/tcp/7701 --api 127.0.0.1:7700 \
  --cpus 1 --memory 512m --label verify=agent-dockerfile >/dev/null
health_js="require('http').get('http://127.0.0.1:7700/healthz', r => { let s = ''; r.on('data', d => { s += d }).on('end', () => { console.log(s); process.exit(r.statusCode === 200 ? 0 : 1) }) }).on('error', () => process.exit(1))"
health='' deadline=$((SECONDS + 90))
while [ "$SECONDS" -lt "$deadline" ]; do
  [ "$(docker inspect -f '{{.State.Running}}' "$agent")" = true ] || die "the agent container exited ($(docker inspect -f '{{.State.ExitCode}}' "$agent"))"
  health=$(docker exec "$agent" node -e "$health_js" 2>/dev/null) && break
  health=''
  sleep 1
done
[ -n "$health" ] || die "the agent did not answer GET /healthz with 200 within 90 s"
grep -q '"ok":true' <<<"$health" || die "unexpected /healthz: $health"
peer_id=$(sed -n 's/.*"peerId":"\([^"]*\)".*/\1/p' <<<"$health")
log "agent healthy: $health"

marker="verify-$run_id"
out=$(timeout 150 docker exec "$agent" bidmesh run --memory 32m "$job_image" sh -c "echo $marker; id -u" 2>"$work/run.err") \
  || { cat "$work/run.err" >&2; die "bidmesh run inside the agent's container failed"; }
grep -qx "$marker" <<<"$out" || { printf '%s\n' "$out" >&2; die "the job's output lacks $marker"; }
job_id=$(sed -n 's/.*submitted \([^ ]*\).*/\1/p' "$work/run.err" | head -1)
[ -n "$job_id" ] || { cat "$work/run.err" >&2; die "bidmesh run printed no job id"; }
state=$(docker exec "$agent" bidmesh status "$job_id" --json | docker exec -i "$agent" node -e "let s = ''; process.stdin.on('data', d => { s += d }).on('end', () => { const j = JSON.parse(s); console.log(j.state + ' ' + j.node) })")
[ "${state%% *}" = succeeded ] || die "job $job_id is ${state%% *}, not succeeded"
[ "${state#* }" = "$peer_id" ] || die "job $job_id ran on ${state#* }, not on this agent ($peer_id)"
log "job $job_id succeeded on the agent (output: $(tr '\n' ' ' <<<"$out"))"

stop_started=$SECONDS
docker stop -t 45 "$agent" >/dev/null
log "docker stop: the agent exited with $(docker inspect -f '{{.State.ExitCode}}' "$agent") after $((SECONDS - stop_started)) s"
step_done "run checks"

log "timings: ${timings[*]/%/;} total $((SECONDS - started)) s"
log "verify-agent-dockerfile: OK in $((SECONDS - started)) s"
echo "verify-agent-dockerfile: OK in $((SECONDS - started)) s"
