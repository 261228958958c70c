#!/usr/bin/env bash
# Runs every test in the solution and ends with one line: "N passed, M failed".
# Usage: ./test.sh [extra dotnet test arguments, e.g. --filter FullyQualifiedName~Realtime]
set -uo pipefail
cd "$(dirname "$0")"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ ! -d tests/interop-js/node_modules ]; then
  echo "Installing the npm clients the interop tests drive (tests/interop-js)…"
  npm ci --prefix tests/interop-js --no-audit --no-fund || { echo "npm ci failed: the interop tests need the npm registry once"; echo "0 passed, 1 failed"; exit 1; }
fi

echo "Building Relay.Cloud.sln…"
if ! dotnet build Relay.Cloud.sln -c Release --nologo -v quiet; then
  echo "build failed: fix the errors above, then run ./test.sh again"
  echo "0 passed, 1 failed"
  exit 1
fi

echo "Running tests (each project prints its summary as it finishes)…"
dotnet test Relay.Cloud.sln -c Release --no-build --nologo --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# VSTest prints one summary per test project: "Passed!  - Failed: 0, Passed: 57, Skipped: 0, Total: 57, …"
passed=$(grep -E '^(Passed|Failed)!' "$log" | sed -E 's/.*Passed: *([0-9]+).*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^(Passed|Failed)!' "$log" | sed -E 's/.*Failed: *([0-9]+),.*/\1/' | awk '{s+=$1} END {print s+0}')
projects=$(grep -cE '^(Passed|Failed)!' "$log")
expected=$(grep -l '<IsTestProject>true</IsTestProject>' tests/*/*.csproj | wc -l)

if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # A test host crashed or a project did not report: count it as a failure rather than hide it.
  failed=1
fi
if [ "$projects" -lt "$expected" ]; then
  echo "only $projects of $expected test projects reported results"
  failed=$((failed + expected - projects))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
