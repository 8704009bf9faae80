#!/usr/bin/env bash
# Runs every test file with Node's own test runner (TypeScript through tsx). Extra arguments are passed on,
# e.g. `npm run test:unit -- --test-name-pattern audit`.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find test -name '*.test.ts' | sort)
# One file at a time: several tests bind the product's default ports, and the machine has two cores.
exec node --import tsx --test --test-concurrency=1 "$@" "${files[@]}"
