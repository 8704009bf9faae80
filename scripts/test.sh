#!/usr/bin/env bash
# The whole test suite, as CI runs it: system packages, type-check, lint, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Raspberry Pi image's build runs in the background of the whole run and is its longest step: its own
# packages first, then the build, while the rest of the packages install and the checks run (both use about one
# core); scripts/run-tests.sh then uses it instead of starting one.
# shellcheck source=scripts/rpi-prebuild.sh
source scripts/rpi-prebuild.sh
bash scripts/ensure-debian-packages.sh "${RPI_PREBUILD_PACKAGES[@]}"
start_rpi_prebuild
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
