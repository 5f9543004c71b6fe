#!/usr/bin/env bash
# Stops the demo mesh and removes its containers and network.
#
#   compose/down.sh          keep the seed's data volume (its job history)
#   compose/down.sh -v       also remove the volume
#   compose/down.sh --purge  also remove the volume, compose/seed.key, api.token and .env
#
# Job containers the agents leave behind (a stop can race a job's own cleanup) are removed
# too: only those labelled with the peer id of one of this project's agents, so another mesh
# on the same engine is never touched.
# shellcheck source=compose/lib.sh
source "$(dirname "$0")/lib.sh"

volumes=0 purge=0
for arg in "$@"; do
  case "$arg" in
    -v|--volumes) volumes=1 ;;
    --purge) volumes=1 purge=1 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $arg (see --help)" ;;
  esac
done

# Compose interpolates the whole file even to take it down.
export SEED_PEER_ID=${SEED_PEER_ID:-$(seed_peer_id || true)}
export SEED_PEER_ID=${SEED_PEER_ID:-unset}

# Each agent prints `bidmesh agent <peer id>` as its first line of output.
peers=()
for c in $(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"); do
  id=$(docker logs "$c" 2>/dev/null | sed -n 's/^bidmesh agent //p' | tail -1)
  [ -n "$id" ] && peers+=("$id")
done

args=(down --remove-orphans --timeout 30)
[ "$volumes" = 1 ] && args+=(-v)
compose "${args[@]}"

for id in "${peers[@]}"; do
  left=$(docker ps -aq --filter label=bidmesh.managed=true --filter "label=bidmesh.node=$id")
  # shellcheck disable=SC2086 # one id per word
  [ -z "$left" ] || docker rm -f $left >/dev/null
done

if [ "$purge" = 1 ]; then
  rm -f "$compose_dir/seed.key" "$compose_dir/api.token" "$compose_dir/.env"
  log "removed compose/seed.key, compose/api.token and compose/.env"
fi
log "project $COMPOSE_PROJECT_NAME is down"
