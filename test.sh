#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this after installing the test servers):
# formatting, vet, every test under the race detector, and each fuzz target for a fixed number of executions.
set -euo pipefail
cd "$(dirname "$0")"

# An execution count, not a duration: go1.26's fuzz coordinator can fail a duration run with a spurious "context
# deadline exceeded" at the deadline when the machine is loaded (golang/go#75804, fixed in go1.27).
# 20000 each keeps CI under its 20-minute aim on a slow 2-core machine (at 50000 the 32 targets took 10 of 22 minutes,
# most of it executions once the instrumented builds are cached); FUZZTIME=500000x ./test.sh for a longer local run.
FUZZTIME=${FUZZTIME:-20000x}

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 15m ./...

echo "== fuzz ($FUZZTIME each)"
# Every Fuzz* function in the tree, found by name so a new target runs without editing this file.
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r file; do
  pkg=./$(dirname "${file#./}")
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //'); do
    echo "-- $pkg $target"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg"
  done
done

echo "== ok"
