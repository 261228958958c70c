#!/usr/bin/env bash
# Runs every test in the solution and ends with one line: "N passed, M failed".
# Usage: ./test.sh [extra dotnet test arguments, e.g. --filter FullyQualifiedName~Realtime]
set -uo pipefail
cd "$(dirname "$0")"

results=artifacts/test-results
rm -rf "$results"
mkdir -p "$results"

if [ ! -d tests/interop-js/node_modules/mqtt ]; then
  echo "Installing the npm clients the interop tests drive (tests/interop-js)…"
  npm ci --prefix tests/interop-js --no-audit --no-fund || { echo "npm ci failed: the interop tests need the npm registry once"; echo "0 passed, 1 failed"; exit 1; }
fi

if [ ! -d tests/Relay.Deploy.Tests/hcl/node_modules ]; then
  echo "Installing the HCL parser the Terraform checks use (tests/Relay.Deploy.Tests/hcl)…"
  npm ci --prefix tests/Relay.Deploy.Tests/hcl --no-audit --no-fund || { echo "npm ci failed: the Terraform checks need the npm registry once"; echo "0 passed, 1 failed"; exit 1; }
fi

if [ ! -d tests/s3rver/node_modules ]; then
  echo "Installing the S3-compatible server the archive tests write to (tests/s3rver)…"
  npm ci --prefix tests/s3rver --no-audit --no-fund || { echo "npm ci failed: the archive tests need the npm registry once"; echo "0 passed, 1 failed"; exit 1; }
fi

if [ ! -d tests/load/k6/node_modules ]; then
  echo "Installing the TypeScript checker for the k6 scripts (tests/load/k6)…"
  npm ci --prefix tests/load/k6 --no-audit --no-fund || { echo "npm ci failed: the k6 type-check tests need the npm registry once"; echo "0 passed, 1 failed"; exit 1; }
fi

# The MQTT interop tests drive Debian's mosquitto clients; without them those tests fail, so say it up front.
for tool in /usr/bin/mosquitto_pub /usr/bin/mosquitto_sub; do
  if [ ! -x "$tool" ]; then
    echo "$tool is missing: apt-get install -y mosquitto mosquitto-clients (.ci/run installs them); the MQTT interop tests need it"
    echo "0 passed, 1 failed"
    exit 1
  fi
done

echo "Building Relay.Cloud.sln…"
if ! dotnet build Relay.Cloud.sln -c Release --nologo -v quiet; then
  echo "build failed: fix the errors above, then run ./test.sh again"
  echo "0 passed, 1 failed"
  exit 1
fi

# In-process test hosts serve as the shipped host does, with socket completions inline
# (Relay:Ingress:InlineSocketCompletions): the runtime reads its switch before a test could set it. Services the tests
# start as processes set it themselves.
export DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS="${DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS:-1}"

status=0
for project in $(grep -l '<IsTestProject>true</IsTestProject>' tests/*/*.csproj | sort); do
  name=$(basename "$project" .csproj)
  echo "Running $name…"
  dotnet test "$project" -c Release --no-build --nologo --results-directory "$results" \
    --logger "trx;LogFileName=$name.trx" --logger "console;verbosity=minimal" "$@" || status=1
done

# One TRX file per test project; sum their counters, and count a project that wrote none as a failure.
python3 - "$results" "$status" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
results, status = sys.argv[1], int(sys.argv[2])
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
passed = failed = 0
files = glob.glob(f"{results}/*.trx")
for path in files:
    counters = ET.parse(path).getroot().find("t:ResultSummary/t:Counters", ns)
    passed += int(counters.get("passed", 0))
    failed += int(counters.get("failed", 0)) + int(counters.get("error", 0)) + int(counters.get("timeout", 0)) + int(counters.get("aborted", 0))
expected = sum(1 for p in glob.glob("tests/*/*.csproj") if "<IsTestProject>true</IsTestProject>" in open(p).read())
if len(files) < expected:
    print(f"only {len(files)} of {expected} test projects reported results (a test host crashed?)")
    failed += expected - len(files)
if status != 0 and failed == 0:
    failed = 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
