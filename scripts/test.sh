#!/usr/bin/env bash
# The whole test suite, as CI runs it: system packages, type-check, lint, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-debian-packages.sh
echo "== type-check"
npx tsc --noEmit -p tsconfig.json
npx tsc --noEmit -p nodes/tsconfig.json
echo "== lint"
npx biome check .
echo "== layers (dependency-cruiser: no cycles, no forbidden imports)"
npm run --silent lint:deps
echo "== build"
node scripts/build.mjs
echo "== tests"
bash scripts/run-tests.sh
