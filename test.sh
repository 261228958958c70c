#!/usr/bin/env bash
# Runs every test in the solution and ends with one line: "N passed, M failed".
# Usage: ./test.sh [extra dotnet test arguments, e.g. --filter FullyQualifiedName~Realtime]
set -uo pipefail
cd "$(dirname "$0")"

results=artifacts/test-results
rm -rf "$results"
mkdir -p "$results"

# Installs a folder's npm packages when they are missing or its package-lock.json changed since they were installed
# (a checksum of the lock file is kept beside them).
npm_install() {
  local folder=$1 what=$2 stamp="$1/node_modules/.relay-lock.sha256" sum
  sum=$(sha256sum "$folder/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    return 0
  fi

  echo "Installing $what ($folder)…"
  npm ci --prefix "$folder" --no-audit --no-fund || { echo "npm ci failed: $what need the npm registry once"; echo "0 passed, 1 failed"; exit 1; }
  echo "$sum" > "$stamp"
}

npm_install tests/interop-js "the npm clients the interop tests drive"
npm_install tests/interop-pusher "the Pusher clients (pusher-js, the pusher server SDK, Laravel Echo) the Pusher interop tests drive"
npm_install tests/interop-grpc "the gRPC clients (grpc-js, proto-loader) the gRPC interop tests drive"
npm_install tests/Relay.Deploy.Tests/hcl "the HCL and PromQL parsers the deploy checks use"
npm_install tests/s3rver "the S3-compatible server the archive tests write to"
npm_install tests/load/k6 "the TypeScript checker for the k6 scripts"

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
