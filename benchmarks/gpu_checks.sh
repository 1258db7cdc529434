#!/usr/bin/env bash
# GPU readiness in one command on a machine with an NVIDIA GPU (a few minutes):
#
#   bash benchmarks/gpu_checks.sh [WHEELS]
#
# 1. onnxruntime-gpu into /tmp/onnx_sise_gpu: from WHEELS (a folder holding the wheel, or its
#    pieces `*.whl.part-*` made with `split -b 60m`, for machines that cannot reach the index:
#    docs/design.md and DESIGN section 7), else from the index. Never over the CPU onnxruntime
#    of the environment: the GPU wheel goes first on PYTHONPATH.
# 2. the compiled core with its CUDA kernels (ONNX_SISE_CUDA=ON) into build/gpu.
# 3. the CUDA tests (-m needs_cuda) and the provider tests on cuda and tensorrt.
# 4. the GPU benchmark: SISE / Ada-SISE / Grad-CAM seconds on Lite0 and ResNet-50, providers
#    cuda (fp32, fp16 masked passes) and tensorrt, against the CPU in the same run
#    (benchmarks/bench_explain.py), appended to benchmarks/RESULTS.md.
# Writes its log to gpu_checks.log (and $OUT/ when the device tool sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${1:-}
SITE=/tmp/onnx_sise_gpu
LOG=${OUT:-.}/gpu_checks.log
exec > >(tee "$LOG") 2>&1

echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" --version

echo "== 1. onnxruntime-gpu"
wheel=""
if [[ -n "$WHEELS" ]]; then
  wheel=$(ls "$WHEELS"/onnxruntime_gpu-*.whl 2>/dev/null | head -1 || true)
  if [[ -z "$wheel" ]]; then
    first=$(ls "$WHEELS"/onnxruntime_gpu-*.whl.part-* | head -1)
    wheel=/tmp/$(basename "${first%.part-*}")
    cat "$WHEELS"/"$(basename "${first%.part-*}")".part-* > "$wheel"
  fi
else
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d /tmp "onnxruntime-gpu>=1.18,<2"
  wheel=$(ls /tmp/onnxruntime_gpu-*.whl | head -1)
fi
"$PY" -m pip install --quiet --no-deps --target "$SITE" "$wheel"
# the CUDA libraries of the environment's nvidia-* packages, for onnxruntime's CUDA provider
NVIDIA_LIBS=$("$PY" -c "import glob, site; print(':'.join(d for p in site.getsitepackages() for d in glob.glob(p + '/nvidia/*/lib')))")
export LD_LIBRARY_PATH="${NVIDIA_LIBS}:${LD_LIBRARY_PATH:-}"

echo "== 2. the core with CUDA kernels"
cmake -S . -B build/gpu -G Ninja -DONNX_SISE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v "$PY")" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" > build/gpu.log
cmake --build build/gpu >> build/gpu.log
mkdir -p build/gpu/site/onnx_sise
cp -r onnx_sise/. build/gpu/site/onnx_sise/ && cp build/gpu/_core*.so build/gpu/site/onnx_sise/
export PYTHONPATH="$SITE:$PWD/build/gpu/site:$PWD/tests:$PWD/export"
"$PY" -c "import onnxruntime as o, onnx_sise._core as c; print('onnxruntime', o.__version__, o.get_available_providers()); assert c.built_with_cuda"

echo "== 3. CUDA tests"
"$PY" -m pytest -q -p no:cacheprovider -m needs_cuda tests/onnx_sise/test_kernels.py tests/onnx_sise/methods/sise/test_io_binding.py
"$PY" -m pytest -q -p no:cacheprovider tests/onnx_sise/model/test_session.py -k gpu_providers

echo "== 4. GPU benchmark"
"$PY" benchmarks/bench_explain.py --models efficientnet-lite0,resnet50 --provider cuda --precisions fp32,fp16 \
  --repeats 3 --no-eager
"$PY" benchmarks/bench_explain.py --models efficientnet-lite0,resnet50 --provider tensorrt --precisions fp32 \
  --repeats 3 --no-eager
[[ -n "${OUT:-}" ]] && cp benchmarks/RESULTS.md "$OUT/" || true
echo "== done"
