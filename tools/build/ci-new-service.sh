#!/usr/bin/env bash
# Proves that `npm run new-service` scaffolds a working service: clones this repository's HEAD
# into `mktemp -d`, with this checkout's node_modules linked in, runs
# `npm run new-service -- shipping` there, then `npm run lint` and the new service's own test
# against real Postgres and NATS. The clone is thrown away however it ends.
# Usage: tools/build/ci-new-service.sh   (from anywhere; .ci/run calls it after `npm ci`)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
commit="$(git -C "$repo" rev-parse HEAD)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "== clone of ${commit:0:12} in $scratch"
git clone --quiet --no-checkout "$repo" "$scratch/meshwork"
cd "$scratch/meshwork"
git checkout --quiet --detach "$commit"
# The checkout's own install, with the patches its postinstall applied.
ln -s "$repo/node_modules" node_modules

echo "== npm run new-service -- shipping (clone)"
npm run new-service -- shipping

echo "== npm run lint (clone)"
npm run lint

echo "== the new service's test (clone)"
npx vitest run services/shipping
