#!/usr/bin/env bash
# GPU shape check on a real NVIDIA machine: `model-agent gpu-shape` beside a raw pynvml dump
# (and nvidia-smi when present), so the alias table can be checked against real hardware.
#
#   benchmarks/gpu_check.sh            # from the repository root
#
# Installs nothing but this package: `pip install -e .` into a throw-away venv that sees the
# system's site-packages. Machines without network access fall back to `--no-deps`, then to
# running from the source tree; pynvml then comes from the system, or from $PYNVML_DIR, or from
# a carried .venv/lib/python3*/site-packages/pynvml.py (a single file, nvidia-ml-py).
# Results go to stdout and to benchmarks/out/gpu_check.txt. Exits non-zero only if the
# command under test fails or prints something that is not JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out_dir=benchmarks/out
mkdir -p "$out_dir"
exec > >(tee "$out_dir/gpu_check.txt") 2>&1

python=${PYTHON:-python3}
venv=$(mktemp -d)/venv
cleanup() { rm -rf "$(dirname "$venv")"; }
trap cleanup EXIT

echo "== machine"
date -u +%Y-%m-%dT%H:%M:%SZ
uname -srm
"$python" --version
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total,driver_version,compute_cap --format=csv

echo "== install"
"$python" -m venv --system-site-packages "$venv"
py="$venv/bin/python"
if timeout 300 "$py" -m pip install --quiet --retries 0 --timeout 10 -e . 2>/dev/null; then
    echo "installed with dependencies"
elif timeout 120 "$py" -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null; then
    echo "installed without dependencies (no network?)"
else
    echo "pip install failed: running from the source tree"
    export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$py" -c "import pynvml" 2>/dev/null; then
    carried=$(ls "$repo"/.venv/lib/python3*/site-packages/pynvml.py 2>/dev/null | head -1)
    dir=${PYNVML_DIR:-${carried:+$(dirname "$carried")}}
    if [ -n "$dir" ]; then
        mkdir -p "$venv/pynvml" && cp "$dir/pynvml.py" "$venv/pynvml/"
        export PYTHONPATH="$venv/pynvml${PYTHONPATH:+:$PYTHONPATH}"
        echo "pynvml from $dir"
    else
        echo "pynvml is not importable: gpu-shape will report it" >&2
    fi
fi
"$py" -c "import pynvml, sys; print('pynvml', getattr(pynvml, '__file__', '?'))" || true

echo "== raw pynvml"
"$py" - <<'EOF'
import time
import pynvml
from model_agent import shapes

start = time.perf_counter()
try:
    pynvml.nvmlInit()
except pynvml.NVMLError as exc:
    print(f"nvmlInit failed: {type(exc).__name__}: {exc}")
    raise SystemExit(0)
def safe(call, *args):
    try:
        return call(*args)
    except pynvml.NVMLError as exc:
        return f"<{type(exc).__name__}>"

try:
    print("driver", safe(pynvml.nvmlSystemGetDriverVersion))
    print("nvml", safe(pynvml.nvmlSystemGetNVMLVersion))
    print("cuda driver", safe(pynvml.nvmlSystemGetCudaDriverVersion))
    count = pynvml.nvmlDeviceGetCount()
    print("count", count)
    for i in range(count):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        name = pynvml.nvmlDeviceGetName(h)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        mib = mem.total // (1024 * 1024)
        print(
            f"gpu {i}: name={name!r} memory_total_bytes={mem.total} memory_mib={mib} "
            f"cc={safe(pynvml.nvmlDeviceGetCudaComputeCapability, h)} "
            f"uuid={safe(pynvml.nvmlDeviceGetUUID, h)} "
            f"mig={safe(pynvml.nvmlDeviceGetMigMode, h)} "
            f"alias={shapes.alias_for_gpu(name, mib)!r}"
        )
finally:
    pynvml.nvmlShutdown()
print(f"raw dump took {time.perf_counter() - start:.3f}s")
EOF

echo "== model-agent gpu-shape"
status=0
for args in "" "--instance-type BM.GPU.H100.8" "--instance-type not-a-known-type"; do
    echo "-- gpu-shape $args"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$py" -m model_agent.cli gpu-shape $args >"$venv.json" || status=$?
    end=$(date +%s.%N)
    cat "$venv.json"
    "$py" -m json.tool "$venv.json" >/dev/null || status=1
    echo "took $(echo "$end - $start" | bc 2>/dev/null || echo "?")s (incl. interpreter start)"
done
echo "== done (status $status)"
exit "$status"
