#!/usr/bin/env bash
# The GPU checks in one run, for a machine with an NVIDIA GPU and no network.
#
#   bash tools/gpu_check.sh OUTDIR
#
# Python packages the machine lacks are taken from wheels in .whl/ (see the
# README's deploy section); an onnxruntime-gpu build unpacked under
# $ATOOL_ORT_SITE (if set) shadows a CPU-only onnxruntime. Every step has its
# own time limit and the script goes on after a failed step, so one run
# reports as much as it can. Logs and JSON go to OUTDIR.
set -u
OUTDIR=${1:-/tmp/atool-gpu-check}
mkdir -p "$OUTDIR"
WORK=$(mktemp -d)
REPO=$(pwd)

step() {  # step NAME SECONDS CMD...: run, log to OUTDIR/NAME.log, print the tail and the exit status
    local name=$1 secs=$2; shift 2
    echo "=== $name"
    local t0=$SECONDS
    timeout "$secs" "$@" >"$OUTDIR/$name.log" 2>&1
    local rc=$?
    tail -n "${TAIL:-6}" "$OUTDIR/$name.log"
    echo "=== $name: rc=$rc in $((SECONDS - t0)) s"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/atool-site .whl/*.whl
fi
export PYTHONPATH="${ATOOL_ORT_SITE:+$ATOOL_ORT_SITE:}/tmp/atool-site:$REPO"
export PYTHONUNBUFFERED=1
python3 - <<'EOF'
import importlib.util, torch, onnxruntime
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
print("onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers())
print("tensorrt importable:", importlib.util.find_spec("tensorrt") is not None, "| modelopt:", importlib.util.find_spec("modelopt") is not None)
EOF

A="python3 -m atool.cli"
D="$WORK/data"
step synth 120 $A data synth --out "$D" --n-source 40 --n-target 32 --n-val 16
# Training picks CUDA by itself when it is there; --amp then runs bf16 autocast.
step train_amp 180 $A train source --source "$D/source" --out "$WORK/small.pt" --iters 60 --batch-size 8 --amp --val "$D/target_val"
TAIL=3 step export_small 180 $A export --checkpoint "$WORK/small.pt" --out "$WORK/small.onnx"
TAIL=12 step query_torch_cuda 120 $A query --model "$WORK/small.pt" --images "$D/target_train/images" --budget 50 --device cuda --out "$OUTDIR/q_torch_cuda.json"
TAIL=12 step query_ort_cuda 120 $A query --model "$WORK/small.onnx" --images "$D/target_train/images" --budget 50 --device cuda --out "$OUTDIR/q_ort_cuda.json"
TAIL=4 step query_ort_trt_provider 120 $A query --model "$WORK/small.onnx" --images "$D/target_train/images" --budget 50 --provider tensorrt --out "$OUTDIR/q_ort_trt.json"
TAIL=4 step export_trt 120 $A export --checkpoint "$WORK/small.pt" --out "$WORK/small_trt.onnx" --trt --fp16
TAIL=25 step bench_small 300 $A bench --model "$WORK/small.pt" --images "$D/target_train/images" --size 1024x512 --limit 16 --batch-size 4 --repeats 3 --out "$OUTDIR/bench_small.json"
# The papers' model (DeepLab-v2 ResNet-101, random init): one step to get a checkpoint, then the GPU backends only.
TAIL=3 step train_r101 180 $A train source --model deeplabv2_resnet101 --source "$D/source" --out "$WORK/r101.pt" --iters 1 --batch-size 2
TAIL=3 step export_r101 240 $A export --checkpoint "$WORK/r101.pt" --out "$WORK/r101.onnx" --sample-size 512x256
TAIL=25 step bench_r101 300 $A bench --model "$WORK/r101.pt" --images "$D/target_train/images" --size 1024x512 --limit 8 --batch-size 4 --repeats 2 --inference-only --out "$OUTDIR/bench_r101.json"
TAIL=30 step pytest_gpu 300 python3 -m pytest -q -p no:cacheprovider -m "gpu or not (slow or integration)" -rs \
    tests/runtime/test_tensorrt_gpu.py tests/export/test_export.py::test_ort_cuda_matches_torch_cuda \
    tests/train/test_engine.py::test_amp_on_cuda tests/runtime/test_providers_and_engines.py
echo "done in $SECONDS s"
