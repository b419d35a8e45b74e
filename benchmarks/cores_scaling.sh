#!/usr/bin/env bash
# Throughput of `model-agent pull` per core count on a many-core machine (a GPU node), in one call:
#
#   benchmarks/cores_scaling.sh                    # HTTPS, 8 x 1 GiB, 1,2,4,8,... cores
#   SHARDS=16 SIZE=2GiB TLS= benchmarks/cores_scaling.sh   # plain HTTP, 32 GiB
#
# Needs nginx, curl, openssl and taskset (apt-get install -y nginx-light curl openssl
# util-linux) and the project's venv (.venv, or $PYTHON). nginx serves the model from
# 127.0.0.2 (over HTTPS with a throw-away certificate trusted through SSL_CERT_FILE unless TLS
# is empty) and runs on the upper half of the CPUs; each pull is pinned with taskset to the
# first 1, 2, 4, ... CPUs of the lower half (the engine starts one transfer thread per CPU it
# may use), next to curl (unverified, one file after another) as the reference.
# Prints the benchmark's table and a "cores | MB/s | MB/s per core" summary; the whole output
# also goes to benchmarks/out/cores_scaling.txt. Needs about 2.2 x SHARDS x SIZE of disk in
# $WORKDIR (default /tmp) and as much page cache to be meaningful.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=benchmarks/out
mkdir -p "$out_dir"
exec > >(tee "$out_dir/cores_scaling.txt") 2>&1

python=${PYTHON:-.venv/bin/python}
shards=${SHARDS:-8}
size=${SIZE:-1GiB}
repeat=${REPEAT:-2}
tls=${TLS---tls}
workdir=${WORKDIR:-/tmp}
for tool in nginx curl openssl taskset; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

cpus=$(nproc --all)
half=$(( cpus > 1 ? cpus / 2 : 1 ))
lists=""
count=1
while [ "$count" -le "$half" ]; do
    lists+="${lists:+;}0-$((count - 1))"
    count=$((count * 2))
done
if [ $(( (count / 2) )) -ne "$half" ]; then
    lists+=";0-$((half - 1))"
fi
nginx_cpus="$half-$((cpus - 1))"
[ "$cpus" -eq 1 ] && nginx_cpus=0

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $cpus CPUs; pulls on: $lists; nginx on $nginx_cpus"
# nginx is started by the benchmark: pin the benchmark (and so nginx, the hub and curl) to the
# upper half; each pinned pull re-pins itself with taskset to its own list.
taskset -c "$nginx_cpus" env PATH="$(dirname "$python"):$PATH" "$python" benchmarks/pull_throughput.py \
    --shards "$shards" --shard-size "$size" --repeat "$repeat" --workdir "$workdir" \
    --tools curl --cpus "$lists" $tls | tee "$out_dir/cores_scaling.table"

echo
echo "| cores | MB/s (best) | MB/s per core |"
echo "|---|---|---|"
grep '^| pull@' "$out_dir/cores_scaling.table" | while IFS='|' read -r _ tool _ _ best _; do
    list=${tool#*@}
    list=${list% }
    last=${list#*-}
    n=$((last + 1))
    printf '| %d | %s | %.0f |\n' "$n" "${best// /}" "$(echo "${best// /} / $n" | bc -l)"
done
