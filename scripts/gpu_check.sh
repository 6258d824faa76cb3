#!/usr/bin/env bash
# GPU check of the GPU server, for a bare GPU machine (Python 3.11+ and pip with PyPI access, an
# NVIDIA driver, nothing else) holding a copy of this repository with build/registry models.
#
#   scripts/gpu_check.sh            CUDA: onnxruntime-gpu[cuda,cudnn] (CUDA/cuDNN from pip)
#   scripts/gpu_check.sh --cpu      the same steps on the CPU provider (machines without a GPU)
#   scripts/gpu_check.sh --quick    fewer clients and requests in the speed step
#
# It creates a virtualenv (.venv-gpucheck), installs functions/gpu_server/requirements.txt,
# then runs scripts/gpu_check.py: providers, parity of GPU against CPU outputs for every model
# (fp32, and fp16 where its gate passes), throughput and latency per max batch size. Output is
# printed and written to benchmarks/results/gpu_check.json (GPU_CHECK_OUT=<dir> to change).
# Budget: 8 minutes; the install is bounded to 4, the checks to the rest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$SECONDS
TARGET=cuda
EXTRA=()
for arg in "$@"; do
    case "$arg" in
        --cpu) TARGET=cpu ;;
        --quick) EXTRA+=(--quick) ;;
        --skip-bench) EXTRA+=(--skip-bench) ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

REGISTRY="${AIMAAS_REGISTRY:-$ROOT/build/registry}"
if ! ls "$REGISTRY"/*/*/manifest.json >/dev/null 2>&1; then
    echo "no models in $REGISTRY (copy build/registry or run make models)" >&2
    exit 2
fi

# The newest Python 3 that is at least 3.11 (the aimaas core needs it).
PY=""
for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c \
        'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        PY="$(command -v "$candidate")"; break
    fi
done
[[ -n "$PY" ]] || { echo "Python >= 3.11 not found" >&2; exit 2; }
echo "== python: $("$PY" --version) ($PY); target: $TARGET"
command -v nvidia-smi >/dev/null 2>&1 \
    && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
VENV="${GPU_CHECK_VENV:-$ROOT/.venv-gpucheck}"
REQ="functions/gpu_server/requirements.txt"
ORT_GPU="$(grep -E '^onnxruntime-gpu==' "$REQ")"
ORT_CPU="onnxruntime==1.32.0"   # functions/inference/requirements.txt's CPU runtime
HTTPX="httpx==0.28.1"           # the load generator's client (requirements-dev.txt)
JIWER="jiwer==4.0.0"            # Whisper transcripts' error rates (model_export/requirements.txt)
BASE_REQ="$(mktemp)"
trap 'rm -f "$BASE_REQ"' EXIT
ORT_GENAI_GPU="$(grep -E '^onnxruntime-genai-cuda==' "$REQ")"
ORT_GENAI_CPU="${ORT_GENAI_GPU/onnxruntime-genai-cuda/onnxruntime-genai}"  # the Lambda's
grep -vE '^onnxruntime-(gpu|genai-cuda)==' "$REQ" > "$BASE_REQ"
if [[ "$TARGET" == cuda ]]; then
    RUNTIME=("${ORT_GPU/onnxruntime-gpu/onnxruntime-gpu[cuda,cudnn]}" "$ORT_GENAI_GPU")
else
    RUNTIME=("$ORT_CPU" "$ORT_GENAI_CPU")
fi

# A virtualenv when the venv module exists; otherwise pip --target beside the repo.
if "$PY" -m venv "$VENV" >/dev/null 2>&1 && [[ -x "$VENV/bin/python" ]]; then
    VPY="$VENV/bin/python"
    PIP=("$VPY" -m pip install -q)
else
    echo "== python venv module missing: installing with pip --target $VENV/site"
    VPY="$PY"
    PIP=("$PY" -m pip install -q --target "$VENV/site")
    export PYTHONPATH="$VENV/site${PYTHONPATH:+:$PYTHONPATH}"
fi
echo "== installing ${RUNTIME[*]} + serving requirements (+ httpx, jiwer) into $VENV"
timeout 240 "${PIP[@]}" -r "$BASE_REQ" "${RUNTIME[@]}" "$HTTPX" "$JIWER"
echo "== install took $((SECONDS - START)) s"

OUT_DIR="${GPU_CHECK_OUT:-$ROOT/benchmarks/results}"
mkdir -p "$OUT_DIR"
export AIMAAS_REGISTRY="$REGISTRY"
export PYTHONPATH="$ROOT:$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
LEFT=$((480 - (SECONDS - START)))
(( LEFT > 60 )) || LEFT=60
NAME=gpu_check; [[ "$TARGET" == cpu ]] && NAME=gpu_check_cpu
timeout "$LEFT" "$VPY" scripts/gpu_check.py --target "$TARGET" \
    --registry "$REGISTRY" --json "$OUT_DIR/$NAME.json" "${EXTRA[@]}"
echo "== gpu_check.sh finished in $((SECONDS - START)) s"
