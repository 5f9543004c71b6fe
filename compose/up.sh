#!/usr/bin/env bash
# Starts (or rescales) the demo mesh: the seed plus N agents, all on this host's engine.
#
#   compose/up.sh [N]        N agents besides the seed (default: $AGENTS or 2)
#   compose/up.sh --no-wait  return once the containers are up, without waiting for the mesh
#   compose/up.sh --rebuild  rebuild the agent image first
#
# First run: builds bidmesh/agent:local offline (scripts/build-agent-image.sh) when missing
# (another BIDMESH_IMAGE, e.g. one in a registry, is pulled first),
# creates the seed's identity compose/seed.key with the project's own key code, the API token
# compose/api.token, and compose/.env with both. Re-running with another N scales up or down.
# Environment: COMPOSE_PROJECT_NAME (bidmesh), SEED_API_PORT (7700, on 127.0.0.1),
# AGENT_CPUS (1) and AGENT_MEMORY (1g) per agent, BIDMESH_IMAGE, COMPOSE, UP_TIMEOUT (120 s).
# shellcheck source=compose/lib.sh
source "$(dirname "$0")/lib.sh"

agents=${AGENTS:-2} wait=1 rebuild=0
for arg in "$@"; do
  case "$arg" in
    --no-wait) wait=0 ;;
    --rebuild) rebuild=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    ''|*[!0-9]*) die "unknown argument $arg (see --help)" ;;
    *) agents=$arg ;;
  esac
done

docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd, or run scripts/setup.sh)"

# -- the agent image ----------------------------------------------------------------------------
# An image of one's own (BIDMESH_IMAGE=registry/...: built from agent/Dockerfile and pushed) is
# pulled when missing; the default one, or one that cannot be pulled, is built offline.
if [ "$rebuild" = 0 ] && ! docker image inspect "$BIDMESH_IMAGE" >/dev/null 2>&1 \
  && [ "$BIDMESH_IMAGE" != bidmesh/agent:local ]; then
  log "pulling $BIDMESH_IMAGE"
  docker pull "$BIDMESH_IMAGE" >/dev/null || log "could not pull $BIDMESH_IMAGE"
fi
if [ "$rebuild" = 1 ] || ! docker image inspect "$BIDMESH_IMAGE" >/dev/null 2>&1; then
  log "building $BIDMESH_IMAGE offline"
  bash "$project_dir/scripts/build-agent-image.sh" "$BIDMESH_IMAGE"
fi
job_image=${BIDMESH_TEST_IMAGE:-bidmesh/busybox:latest}
docker image inspect "$job_image" >/dev/null 2>&1 \
  || log "note: $job_image is missing, so jobs using it will fail with reason 'image' (bash scripts/setup.sh builds it)"

# -- the seed's identity ------------------------------------------------------------------------
# loadOrCreateKey (src/mesh/libp2p-mesh.ts) is what the agent itself runs at start: it reads
# DIR/peer.key or creates one. Run against a scratch directory, it creates the key (first run)
# or reads the existing one back, and the peer id printed is the one the seed will have.
peer_id_script='
await import(process.argv[1] + "/src/polyfill.ts")
const { loadOrCreateKey } = await import(process.argv[1] + "/src/mesh/libp2p-mesh.ts")
const { peerIdFromPrivateKey } = await import("@libp2p/peer-id")
console.log(peerIdFromPrivateKey(await loadOrCreateKey(process.argv[2])).toString())'
key_dir=$(mktemp -d)
trap 'rm -rf "$key_dir"' EXIT
[ -f "$compose_dir/seed.key" ] && cp "$compose_dir/seed.key" "$key_dir/peer.key"
peer_id=$(seed_peer_id || true)
if [ -n "$peer_id" ] && [ -f "$compose_dir/seed.key" ] && [ "$compose_dir/.env" -nt "$compose_dir/seed.key" ]; then
  : # .env was derived from this very key: reuse it (deriving costs a node start)
elif command -v node >/dev/null 2>&1 && [ -d "$project_dir/node_modules/tsx" ]; then
  peer_id=$(cd "$project_dir" && node --import tsx --input-type=module -e "$peer_id_script" "$project_dir" "$key_dir")
else
  # No node here: the same code, run inside the agent image.
  peer_id=$(docker run --rm --network none --user "$(id -u):$(id -g)" -v "$key_dir:/key" \
    --entrypoint /usr/local/bin/node "$BIDMESH_IMAGE" --import tsx --input-type=module -e "$peer_id_script" /app /key)
fi
[[ "$peer_id" =~ ^[1-9A-HJ-NP-Za-km-z]{40,}$ ]] || die "could not derive the seed's peer id (got '$peer_id')"
if [ ! -f "$compose_dir/seed.key" ]; then
  install -m 0600 "$key_dir/peer.key" "$compose_dir/seed.key"
  log "created the seed identity compose/seed.key ($peer_id)"
fi
export SEED_PEER_ID=$peer_id

# -- the API token ----------------------------------------------------------------------------
# The seed's API listens beyond loopback (the host reaches it through a published port), so
# it requires a bearer token. Random, made once, private to this user.
if [ ! -s "$compose_dir/api.token" ]; then
  (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$compose_dir/api.token")
  log "created the API token compose/api.token"
fi
BIDMESH_TOKEN=$(cat "$compose_dir/api.token")
export BIDMESH_TOKEN
(umask 077; printf '# Written by compose/up.sh: the peer id of compose/seed.key and the API token.\nSEED_PEER_ID=%s\nBIDMESH_TOKEN=%s\n' \
  "$peer_id" "$BIDMESH_TOKEN" > "$compose_dir/.env")
chmod 0600 "$compose_dir/.env"   # an older .env kept its mode; it holds the token now

# -- up -----------------------------------------------------------------------------------------
log "starting project $COMPOSE_PROJECT_NAME: seed + $agents agent(s)"
compose up -d --no-build --scale agent="$agents"

api_port=${SEED_API_PORT:-7700}
if [ "$wait" = 1 ]; then
  # Asked inside the seed, so the host needs neither curl nor node.
  want=$((agents + 1)) timeout_s=${UP_TIMEOUT:-120}
  log "waiting up to ${timeout_s} s for the seed to see $want alive agents"
  count_script="require('http').get('http://127.0.0.1:7700/v1/nodes', { headers: { authorization: 'Bearer ' + process.env.BIDMESH_TOKEN } }, r => { let s = ''; r.on('data', d => { s += d }).on('end', () => { try { console.log(JSON.parse(s).nodes.filter(n => n.liveness === 'alive').length) } catch { console.log(0) } }) }).on('error', () => console.log(0))"
  alive=0 deadline=$((SECONDS + timeout_s))
  while [ "$SECONDS" -lt "$deadline" ]; do
    alive=$(compose exec -T seed node -e "$count_script" 2>/dev/null | tr -dc '0-9' || true)
    [ "${alive:-0}" -ge "$want" ] && break
    sleep 1
  done
  [ "${alive:-0}" -ge "$want" ] || die "only ${alive:-0} of $want agents alive after ${timeout_s} s; see the logs: cd compose && ${compose_cmd[*]} logs"
  log "mesh ready: $alive agents alive"
fi

cat >&2 <<MSG
[bidmesh compose] seed API: http://127.0.0.1:$api_port, token in compose/api.token:
[bidmesh compose]   export BIDMESH_API=http://127.0.0.1:$api_port BIDMESH_TOKEN=\$(cat compose/api.token); bin/bidmesh.js nodes
[bidmesh compose] publish from agent i (0 = seed): compose/publish.sh i -- --memory 64m bidmesh/busybox:latest echo hello
[bidmesh compose] scale: compose/up.sh N      stop: compose/down.sh [-v]
MSG
