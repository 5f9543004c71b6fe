#!/usr/bin/env bash
# Installs the bidmesh agent on a Linux host, as root, in one command. Idempotent.
#
#   agent/install.sh                      install, enable and start the agent
#   agent/install.sh --upgrade            replace the code and restart; data and config kept
#   agent/install.sh --uninstall          stop, disable, remove the unit and the code;
#                                         data (/var/lib/bidmesh) and config (/etc/bidmesh) kept
#   agent/install.sh --uninstall --purge  also remove data, config and the bidmesh user
# Options:
#   --no-start            install or upgrade without (re)starting the service
#   --local-modules       copy this checkout's node_modules instead of running `npm ci`
#                         (for hosts without npm registry access; same OS and CPU only)
#
# What it needs: Node.js 20 or newer on PATH (Debian 12 ships Node 18: install Node 20 from
# nodejs.org or NodeSource first; this script will not), npm, and apt-get when Docker is
# missing (it installs Debian's docker.io).
#
# Paths can be moved for packaging or tests: BIDMESH_PREFIX (/opt/bidmesh),
# BIDMESH_CONFIG_DIR (/etc/bidmesh), BIDMESH_DATA_DIR (/var/lib/bidmesh),
# BIDMESH_UNIT_DIR (/etc/systemd/system), BIDMESH_USER (bidmesh), BIDMESH_BIN_LINK
# (/usr/local/bin/bidmesh; empty for none).
set -euo pipefail

prefix=${BIDMESH_PREFIX:-/opt/bidmesh}
config_dir=${BIDMESH_CONFIG_DIR:-/etc/bidmesh}
data_dir=${BIDMESH_DATA_DIR:-/var/lib/bidmesh}
unit_dir=${BIDMESH_UNIT_DIR:-/etc/systemd/system}
user=${BIDMESH_USER:-bidmesh}
bin_link=${BIDMESH_BIN_LINK-/usr/local/bin/bidmesh}
unit=bidmesh-agent.service
source_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)

log() { printf '[bidmesh install] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mode=install start=1 purge=0 local_modules=0
for arg in "$@"; do
  case "$arg" in
    --upgrade) mode=upgrade ;;
    --uninstall) mode=uninstall ;;
    --purge) purge=1 ;;
    --no-start) start=0 ;;
    --local-modules) local_modules=1 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $arg (see --help)" ;;
  esac
done
[ "$purge" = 0 ] || [ "$mode" = uninstall ] || die "--purge goes with --uninstall"
[ "$(id -u)" = 0 ] || die "run as root (it installs a system service)"

systemd_running() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# ---- uninstall -----------------------------------------------------------------------------
if [ "$mode" = uninstall ]; then
  if systemd_running; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  elif [ -f "$unit_dir/$unit" ]; then
    log "systemd is not running: stop any agent you started by hand before removing it"
  fi
  rm -f "$unit_dir/$unit"
  systemd_running && systemctl daemon-reload
  if [ -n "$bin_link" ] && [ -L "$bin_link" ] && [[ "$(readlink "$bin_link")" == "$prefix"/* ]]; then rm -f "$bin_link"; fi
  if [ "$prefix" = "$source_dir" ]; then
    log "not removing $prefix: this script runs from it (delete it yourself afterwards)"
  else
    rm -rf "$prefix" "$prefix.new" "$prefix.old"
  fi
  if [ "$purge" = 1 ]; then
    # Job containers are only reported: the engine may be shared (another agent, a test
    # mesh), and a container's label names its agent by peer id, which is about to go.
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
      leftovers=$(docker ps -aq --filter label=bidmesh.managed=true)
      [ -z "$leftovers" ] || log "job containers labelled bidmesh.managed=true remain on this engine; if they are this agent's: docker rm -f $(echo $leftovers)"
    fi
    rm -rf "$data_dir" "$config_dir"
    if [ "$user" != root ] && id "$user" >/dev/null 2>&1; then userdel "$user" 2>/dev/null || log "could not remove user $user"; fi
    log "uninstalled and purged (code, unit, data, config)"
  else
    log "uninstalled; kept $data_dir (identity, job history) and $config_dir (use --purge to remove them)"
  fi
  exit 0
fi

# ---- prerequisites -------------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "Node.js is not installed. bidmesh needs Node.js 20 or newer, which Debian 12 does not package (it has 18): install Node 20 from https://nodejs.org or NodeSource, then run this again."
node_version=$(node -p 'process.versions.node')
[ "${node_version%%.*}" -ge 20 ] || die "Node.js $node_version is too old: bidmesh needs 20 or newer (Debian 12's nodejs package is 18; install Node 20 from https://nodejs.org or NodeSource)."
[ "$local_modules" = 1 ] || command -v npm >/dev/null 2>&1 || die "npm is missing (it comes with Node.js; or use --local-modules)"

if ! command -v docker >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "Docker is not installed and this is not a Debian-like host: install Docker, then run this again"
  log "installing Docker (Debian's docker.io)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 docker.io >/dev/null
fi
if systemd_running; then systemctl enable --now docker.service >/dev/null 2>&1 || log "could not start docker.service; check: systemctl status docker"; fi

# ---- the service user ----------------------------------------------------------------------
if [ "$user" != root ] && ! id "$user" >/dev/null 2>&1; then
  log "creating system user $user"
  useradd --system --home-dir "$data_dir" --no-create-home --shell /usr/sbin/nologin --user-group "$user"
fi
if [ "$user" != root ] && getent group docker >/dev/null 2>&1; then usermod -aG docker "$user"; fi

# ---- the code ------------------------------------------------------------------------------
# Built in $prefix.new and swapped in whole, so a failed `npm ci` leaves the running version alone.
install_code() {
  local stage=$prefix.new
  rm -rf "$stage"
  mkdir -p "$stage"
  log "copying bidmesh from $source_dir to $prefix"
  local parts=(package.json package-lock.json bin src scripts/build.mjs agent) extra
  for extra in README.md LICENSE docs; do [ -e "$source_dir/$extra" ] && parts+=("$extra"); done
  tar -C "$source_dir" -c --exclude='*.test.ts' "${parts[@]}" | tar -C "$stage" -x
  if [ "$local_modules" = 1 ]; then
    [ -d "$source_dir/node_modules" ] || die "--local-modules: $source_dir/node_modules does not exist"
    log "copying node_modules from the checkout"
    cp -a "$source_dir/node_modules" "$stage/"
  else
    log "installing production dependencies (npm ci --omit=dev)"
    (cd "$stage" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) \
      || die "npm ci failed (no registry access? re-run with --local-modules); the installed version is unchanged"
  fi
  # The bundle the agent runs (plain JavaScript, no tsx in the agent's process).
  (cd "$stage" && node scripts/build.mjs) || die "building dist/ failed; the installed version is unchanged"
  chmod 0755 "$stage/bin/bidmesh.js" "$stage/agent/bidmesh-agent" "$stage/agent/install.sh"
  chown -R root:root "$stage"
  chmod -R go-w "$stage"
  if [ -d "$prefix" ]; then
    rm -rf "$prefix.old"
    mv "$prefix" "$prefix.old"
  fi
  mv "$stage" "$prefix"
  rm -rf "$prefix.old"
}

installed=0
[ -f "$prefix/package.json" ] && [ -x "$prefix/agent/bidmesh-agent" ] && installed=1
if [ "$prefix" = "$source_dir" ]; then
  log "running from $prefix: using the code in place"
  [ -d "$prefix/node_modules" ] || (cd "$prefix" && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
  (cd "$prefix" && node scripts/build.mjs) || die "building dist/ failed"
elif [ "$mode" = upgrade ] || [ "$installed" = 0 ]; then
  install_code
else
  log "bidmesh $(node -p "require('$prefix/package.json').version") is installed in $prefix; use --upgrade to replace it"
fi
if [ -n "$bin_link" ]; then
  mkdir -p "$(dirname "$bin_link")"
  ln -sfn "$prefix/bin/bidmesh.js" "$bin_link"
fi

# ---- data and configuration ----------------------------------------------------------------
install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$data_dir"
install -d -m 0755 "$config_dir"
if [ ! -e "$config_dir/agent.yaml" ]; then
  log "writing $config_dir/agent.yaml (edit it, then: systemctl restart bidmesh-agent)"
  sed "s#^data-dir: .*#data-dir: $data_dir#" "$prefix/agent/agent.yaml" > "$config_dir/agent.yaml"
  chmod 0644 "$config_dir/agent.yaml"
elif [ "$mode" = upgrade ] && ! cmp -s "$prefix/agent/agent.yaml" "$config_dir/agent.yaml"; then
  # Never overwrite the operator's file; leave the new version's one beside it to compare.
  install -m 0644 "$prefix/agent/agent.yaml" "$config_dir/agent.yaml.dist"
  log "kept $config_dir/agent.yaml; this version's annotated defaults are in agent.yaml.dist"
fi
BIDMESH_CONFIG="$config_dir/agent.yaml" BIDMESH_HOME="$prefix" "$prefix/agent/bidmesh-agent" --print >/dev/null \
  || die "$config_dir/agent.yaml is not valid (see above)"

# ---- the service ---------------------------------------------------------------------------
mkdir -p "$unit_dir"
sed -e "s#/opt/bidmesh#$prefix#g" -e "s#/etc/bidmesh#$config_dir#g" -e "s#/var/lib/bidmesh#$data_dir#g" \
    -e "s#^User=bidmesh#User=$user#" -e "s#^Group=bidmesh#Group=$(id -gn "$user")#" \
    "$prefix/agent/$unit" > "$unit_dir/$unit.tmp"
# StateDirectory= is relative to /var/lib; drop it when the data lives elsewhere.
case "$data_dir" in /var/lib/*) sed -i "s#^StateDirectory=.*#StateDirectory=${data_dir#/var/lib/}#" "$unit_dir/$unit.tmp" ;;
  *) sed -i '/^StateDirectory/d' "$unit_dir/$unit.tmp" ;; esac
chmod 0644 "$unit_dir/$unit.tmp"
mv "$unit_dir/$unit.tmp" "$unit_dir/$unit"

if systemd_running; then
  systemctl daemon-reload
  systemctl enable "$unit" >/dev/null 2>&1
  if [ "$start" = 1 ]; then
    if [ "$mode" = upgrade ]; then systemctl restart "$unit"; else systemctl start "$unit"; fi
    sleep 2
    systemctl is-active --quiet "$unit" || die "the agent did not stay up; see: journalctl -u bidmesh-agent -n 50"
    log "bidmesh-agent is running; its peer address: journalctl -u bidmesh-agent | grep listening"
  else
    log "installed and enabled; start it with: systemctl start bidmesh-agent"
  fi
else
  log "systemd is not running here, so nothing was started. Start the agent with:"
  log "  runuser -u $user -- env BIDMESH_CONFIG=$config_dir/agent.yaml $prefix/agent/bidmesh-agent"
  log "(the unit is in $unit_dir/$unit for when systemd runs)"
fi
log "done ($mode): code $prefix, config $config_dir/agent.yaml, data $data_dir"
