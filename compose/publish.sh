#!/usr/bin/env bash
# Publishes a job from one agent of the demo mesh: runs `bidmesh run` inside that agent's
# container against its own API, so the job's owner is that agent.
#
#   compose/publish.sh [INDEX] -- <bidmesh run arguments>
#     INDEX 0 (default) is the seed; 1..N are the replicas of the `agent` service.
#
#   compose/publish.sh 2 -- --memory 64m bidmesh/busybox:latest sh -c 'echo hi from agent 2'
#   compose/publish.sh 1 -- -d --cpus 0.5 bidmesh/busybox:latest sleep 30   # prints the job id
#
# Without -d it waits, streams the job's output and exits with the job's exit code, like
# `docker run`. The image name refers to the host's engine, where the job will run.
# shellcheck source=compose/lib.sh
source "$(dirname "$0")/lib.sh"

index=0
if [ $# -gt 0 ] && [ "$1" != -- ]; then index=$1; shift; fi
[ "${1:-}" = -- ] && shift
[[ "$index" =~ ^[0-9]+$ ]] || die "INDEX must be a number (0 = seed)"
[ $# -gt 0 ] || die "usage: compose/publish.sh [INDEX] -- <bidmesh run arguments>"

export SEED_PEER_ID=${SEED_PEER_ID:-$(seed_peer_id || true)}
export SEED_PEER_ID=${SEED_PEER_ID:-unset}

exec_args=(exec)
# Without a terminal on both ends, ask for none (docker-compose 1.x fails otherwise).
{ [ -t 0 ] && [ -t 1 ]; } || exec_args+=(-T)
if [ "$index" = 0 ]; then exec_args+=(seed); else exec_args+=(--index="$index" agent); fi
compose "${exec_args[@]}" node /app/bin/bidmesh.js run --api http://127.0.0.1:7700 "$@"
