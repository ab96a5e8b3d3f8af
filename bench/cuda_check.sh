#!/usr/bin/env bash
# The GPU check of issue 15, in one script for a machine with an NVIDIA GPU and no network:
# build softzo with its CUDA backend for this GPU's architecture only, run tests/test_cuda.py
# (and the CPU softmax/loss tests, quickly), then the CUDA benchmark, which writes
# bench/results/cuda.md. Each stage runs even if an earlier one failed; the exit status says
# whether all passed. Outputs (logs, cuda.md, cuda.json) also go to $OUT when it is set.
#
#   bash bench/cuda_check.sh            # python3, nvcc, cmake, ninja, nanobind,
#                                       # scikit-build-core, torch with CUDA, pytest, hypothesis
# Environment: PYTHON (python3), CUDA_ARCH (from the GPU, e.g. 90), SOFTZO_BENCH_REPS (20).
set -x
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-bench/results}
mkdir -p "$OUT_DIR" bench/results
status=0
stage() { echo "=== $1: $2 ($(date +%T))" | tee -a "$OUT_DIR/cuda_check_summary.txt"; }

nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv || true
ARCH=${CUDA_ARCH:-$($PY -c "import torch; print('%d%d' % torch.cuda.get_device_capability(0))" 2>/dev/null || echo 90)}
command -v nvcc || export PATH=/usr/local/cuda/bin:$PATH
nvcc --version | tail -2

# 1. Build: this GPU's architecture only, every core; no SIMDe or OpenBLAS (not needed on the GPU
#    path, and not installed there), no build isolation (no network).
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
if timeout 400 $PY -m pip install --no-build-isolation --no-deps -v . \
    -C cmake.define.SOFTZO_ENABLE_CUDA=ON \
    -C cmake.define.SOFTZO_EMULATE_AVX512=OFF \
    -C cmake.define.SOFTZO_WITH_BLAS=OFF \
    -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$ARCH" \
    -C build-dir=build/cuda-check >"$OUT_DIR/cuda_build.log" 2>&1; then
  stage build ok
else
  stage build FAILED
  tail -60 "$OUT_DIR/cuda_build.log"
  exit 1  # nothing below can run without the module
fi
grep -E "spill stores" "$OUT_DIR/cuda_build.log" | sort | uniq -c | sort -rn | head -5
(cd /tmp && $PY -c "import softzo, json; print(json.dumps(softzo.info(), indent=1))")

# 2. The CUDA tests, then the CPU softmax and loss tests (a quick subset).
if timeout 240 $PY -m pytest -x -q -rs -s tests/test_cuda.py >"$OUT_DIR/test_cuda.log" 2>&1; then
  stage test_cuda ok
else
  stage test_cuda FAILED
  status=1
fi
tail -40 "$OUT_DIR/test_cuda.log"
if timeout 120 $PY -m pytest -q -x tests/test_softmax.py -k "adversarial or awkward" \
    -p no:cacheprovider >"$OUT_DIR/test_cpu.log" 2>&1; then
  stage test_cpu ok
else
  stage test_cpu FAILED
  status=1
fi
tail -5 "$OUT_DIR/test_cpu.log"

# 3. The benchmark (its own failures are reported per case inside).
if timeout 300 $PY -m bench.cuda --reps "${SOFTZO_BENCH_REPS:-20}" \
    --out bench/results >"$OUT_DIR/bench_cuda.log" 2>&1; then
  stage bench ok
else
  stage bench FAILED
  status=1
fi
cat "$OUT_DIR/bench_cuda.log" | tail -30
[ "$OUT_DIR" != bench/results ] && cp bench/results/cuda.md bench/results/cuda.json "$OUT_DIR/" 2>/dev/null
cat "$OUT_DIR/cuda_check_summary.txt"
exit $status
