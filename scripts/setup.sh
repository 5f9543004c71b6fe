#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 host (as root): node modules, a running
# Docker engine from Debian's docker.io, and the small local images that the demo and
# tests use. Nothing is pulled from an image registry: images are built from
# busybox-static with `docker import`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then log "missing ${need_apt[*]}; run as root or install them"; exit 1; fi
  log "installing ${need_apt[*]} from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Chromium for the dashboard's browser test (test/dashboard): Debian's package, because
# Playwright's own browser download needs the internet. Only the test needs it, so a
# non-root run without it warns instead of failing the whole set-up.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing chromium from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    log "chromium missing (the dashboard test needs it); run as root or install it"
  fi
fi

# node modules: install when missing or when the lock file changed since the last install.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing node modules (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# The bundle agents run (plain JavaScript; bin/bidmesh.js falls back to the TypeScript
# sources when it is older than src/). Half a second with esbuild.
node scripts/build.mjs

# Docker engine: start one when none answers.
if ! docker info >/dev/null 2>&1; then
  if [ ! -S /var/run/docker.sock ] || ! docker info >/dev/null 2>&1; then
    log "starting dockerd in the background (log: /var/log/bidmesh-dockerd.log)"
    nohup dockerd >/var/log/bidmesh-dockerd.log 2>&1 &
    for _ in $(seq 1 120); do
      docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/bidmesh-dockerd.log"; exit 1; }
  fi
fi

# Local job image: busybox-static plus its applet links, a passwd with an unprivileged
# user, and a writable /tmp. Rebuilt only when missing.
IMAGE=${BIDMESH_TEST_IMAGE:-bidmesh/busybox:latest}
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "building $IMAGE from busybox-static"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/work" "$root/proc" "$root/sys" "$root/dev"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\njob:x:10000:10000:job:/work:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\njob:x:10000:\n' > "$root/etc/group"
  chmod 1777 "$root/tmp"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
fi
log "ready: docker $(docker version --format '{{.Server.Version}}'), image $IMAGE"
