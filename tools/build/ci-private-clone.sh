#!/usr/bin/env bash
# Proves that a fresh clone works from inside a private directory, as root or not: clones this
# repository's HEAD into `mktemp -d` (mode 0700, as CI runners and root's home commonly are),
# installs it with its own `npm ci` (its postinstall applies patches/), and runs the short
# process-mesh and chaos suites there. Nothing above the clone is made more permissive.
# Usage: tools/build/ci-private-clone.sh   (from anywhere; .ci/run calls it)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
commit="$(git -C "$repo" rev-parse HEAD)"
private="$(mktemp -d)"
trap 'rm -rf "$private"' EXIT
chmod 700 "$private"

echo "== private clone of ${commit:0:12} in $private ($(stat -c %a "$private"))"
git clone --quiet --no-checkout "$repo" "$private/meshwork"
cd "$private/meshwork"
git checkout --quiet --detach "$commit"

echo "== npm ci (private clone)"
npm ci --no-audit --no-fund

echo "== process mesh and short chaos suites (private clone)"
npx vitest run tests/e2e/order-flow.test.ts tests/chaos/under-load.test.ts
