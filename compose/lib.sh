# shellcheck shell=bash disable=SC2034
# Shared by up.sh, down.sh and publish.sh (sourced, not run). Picks the Compose command,
# the project name and the image, and runs Compose from this directory so .env is found.
set -euo pipefail

compose_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project_dir=$(dirname "$compose_dir")
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-bidmesh}
export BIDMESH_IMAGE=${BIDMESH_IMAGE:-bidmesh/agent:local}

log() { printf '[bidmesh compose] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# $COMPOSE overrides the choice, e.g. COMPOSE=docker-compose or COMPOSE="docker compose".
if [ -n "${COMPOSE:-}" ]; then
  read -r -a compose_cmd <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
else
  die "neither 'docker compose' nor 'docker-compose' is installed (Debian: apt-get install docker-compose)"
fi

compose() {
  (cd "$compose_dir" && "${compose_cmd[@]}" -f docker-compose.yml "$@")
}

# A value from .env (written by up.sh), e.g. SEED_PEER_ID.
env_value() {
  [ -f "$compose_dir/.env" ] && sed -n "s/^$1=//p" "$compose_dir/.env" | tail -1
}
seed_peer_id() { env_value SEED_PEER_ID; }
