#!/usr/bin/env bash
# Key broker throughput: how many relay boots (key releases) and pushes one
# broker serves, with real crypto end to end (simulated SEV-SNP reports with
# an RSA-4096 ARK/ASK chain, age, ed25519, TLS on loopback, fsync'd store).
# Runs the Go benchmarks of tools/broker/internal/broker (bench_test.go says
# what each one measures) and prints a table. Reproduce with
#
#   bash bench/broker.sh                  (about a minute)
#   BENCHTIME=3s COUNT=3 bash bench/broker.sh
#   BENCH='BootRelease|Push' bash bench/broker.sh
#   RAW=1 bash bench/broker.sh            (also print go test's own lines)
#
# Clients and broker share the machine's CPUs: the end-to-end rows are a lower
# bound on what a broker alone serves; the "server-" rows are the broker alone.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"
export GOPROXY=${GOPROXY:-https://proxy.golang.org}
benchtime=${BENCHTIME:-1s}
count=${COUNT:-1}
pattern=${BENCH:-.}

cd "$here/tools/broker"
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if ! go test -trimpath -run '^$' -bench "$pattern" -benchtime "$benchtime" -count "$count" ./internal/broker/ >"$raw" 2>&1; then
	cat "$raw" >&2
	echo "bench/broker.sh: go test failed" >&2
	exit 1
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "${RAW:-}" ]; then
	grep -E '^(Benchmark|goos|goarch|cpu|pkg)' "$raw"
	echo
fi

echo "key broker throughput (bench/broker.sh, benchtime $benchtime, count $count)"
echo "$(go version); $(nproc) CPUs; $(grep -m1 '^cpu:' "$raw" || echo 'cpu: ?')"
echo "load average before/after: $load_before / $load_after"
echo
awk '
/^Benchmark/ {
	name = $1
	sub(/^Benchmark/, "", name)
	sub(/-[0-9]+$/, "", name)
	delete v
	for (i = 3; i < NF; i += 2) v[$(i + 1)] = $i
	rate = ""; what = ""
	split("releases/s pushes/s server-releases/s server-pushes/s", units, " ")
	for (u = 1; u <= 4; u++) if (units[u] in v) { rate = v[units[u]]; what = units[u]; sub(/\/s$/, "", what) }
	crypt = ("client-open-ms/op" in v) ? v["client-open-ms/op"] : v["client-seal-ms/op"]
	printf "%-26s %9.2f %9s %-16s %8s %8s %8s %8s %8s\n", name, v["ns/op"] / 1e6, fmt(rate, 1), what,
		fmt(v["p50-ms"], 2), fmt(v["p99-ms"], 2), fmt(v["client-sign-ms/op"], 2), fmt(crypt, 2), fmt(v["server+net-ms/op"], 2)
	if ("flood-req/s" in v) flood[name] = sprintf("%s: the flood sent %.0f requests/s; answered 429 %d, 403/400 %d, 200 (challenges for the real relay) %d, anything else %d; the broker'"'"'s heap grew %.2f MiB", name, v["flood-req/s"], v["flood-429"], v["flood-403/400"], v["flood-200"], v["flood-other"], v["heap-growth-MiB"])
}
END { for (n in flood) print "\n" flood[n] }
function fmt(x, d) { return x == "" ? "-" : sprintf("%." d "f", x) }
BEGIN {
	printf "%-26s %9s %9s %-16s %8s %8s %8s %8s %8s\n", "benchmark", "ms/op", "rate/s", "unit", "p50 ms", "p99 ms", "sign ms", "crypt ms", "srv+net"
}
' "$raw"
cat <<'EOF'

rate/s: completed releases (boot) or pushes per second of wall time; p50/p99:
latency of one release or push. BootRelease, ConcurrentBoots, Push: end to
end (client and broker over TLS, a new connection per boot or push); sign,
crypt (age decrypt and checks of a release, or sealing a push payload) and
srv+net (the challenge and attest round trips) split a sequential one, in ms
per op. ConcurrentBoots/boots=N: N relays boot at once, ms/op is per wave of
N. BootsUnderFlood: 128 relays boot at once, each from its own address, while
one address floods challenges for invented and real relays and junk attests
(default per-source limits, real clock); every relay must get its keys.
ServerAttest: the broker's attest handler alone, requests made beforehand,
1 or 8 at a time. ServerParts: pieces of one release (SNP verification, bundle
load, sealing and signing, the fsync'd commit).
EOF
