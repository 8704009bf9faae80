#!/usr/bin/env bash
# Runs the test files with Node's own test runner (TypeScript through tsx).
# With no arguments: every test/**/*.test.ts. Arguments that name files run only those; other arguments are
# passed to the runner, e.g. `npm run test:unit -- --test-name-pattern audit`.
set -euo pipefail
cd "$(dirname "$0")/.."
opts=()
files=()
for a in "$@"; do
  if [[ "$a" == *.test.ts ]]; then files+=("$a"); else opts+=("$a"); fi
done
if [[ ${#files[@]} -eq 0 ]]; then
  mapfile -t files < <(find test -name '*.test.ts' | sort)
fi
# One file at a time: several tests bind the product's default ports, and the machine has two cores.
# A per-test timeout turns a hung peer into a failure instead of a stuck CI run.
exec node --import tsx --test --test-concurrency=1 --test-timeout=600000 "${opts[@]}" "${files[@]}"
