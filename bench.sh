#!/usr/bin/env bash
# Runs the benchmark suite (not part of ./test.sh): Relay, NATS over WebSocket and an ASP.NET Core SignalR hub under
# the same load, from the same load generator, in one run, and writes the figures into docs/benchmarks.md.
# Usage: ./bench.sh [scenario ...] [harness options]   (see: dotnet tests/Relay.Bench/bin/Release/net10.0/Relay.Bench.dll --help)
#        BENCH_MICRO=1 ./bench.sh   also runs the BenchmarkDotNet micro-benchmarks (about 5 more minutes)
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "Installing nats-server (Debian), the NATS peer…"
  sudo=""
  if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q nats-server
fi

echo "Building Relay.Cloud.sln (Release)…"
dotnet build Relay.Cloud.sln -c Release --nologo -v quiet

mkdir -p artifacts/bench
dotnet tests/Relay.Bench/bin/Release/net10.0/Relay.Bench.dll "$@" --markdown docs/benchmarks.md --json artifacts/bench/results.json

if [ "${BENCH_MICRO:-0}" = "1" ]; then
  echo "Running the micro-benchmarks (tests/Relay.Bench.Micro)…"
  dotnet run -c Release --project tests/Relay.Bench.Micro -- --filter '*'
fi
echo "Wrote docs/benchmarks.md and artifacts/bench/results.json"
