#!/usr/bin/env bash
# ONNX export's acceptance run on the real MNIST test set (docs/ONNX.md): lenet5-mnist, mnist-fast
# and resnet-mnist are each trained for one epoch, exported, and run by ONNX Runtime on all 10,000
# test images; scripts/onnx-check.py requires onnx's full checker to accept each file, the
# probabilities to be within 1e-4 of `ptrain predict`'s and the same predicted class on every image.
# (Every config in configs/, trained briefly on generated data, is checked the same way by
# `swift test -c release --filter ONNXExportTests`.)
#
# Usage: scripts/onnx-mnist.sh MNIST_DIR [THREADS]
#   MNIST_DIR holds the four IDX files (raw, e.g. t10k-images.idx3-ubyte). Needs a release build
#   (swift build -c release) and .venv-onnx (python3 -m venv .venv-onnx &&
#   .venv-onnx/bin/pip install -r scripts/onnx-requirements.txt). Prints one line per config.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: scripts/onnx-mnist.sh MNIST_DIR [THREADS]}
threads=${2:-2}
ptrain=.build/release/ptrain
python=${PTRAIN_ONNX_PYTHON:-.venv-onnx/bin/python}
[ -x "$ptrain" ] || { echo "onnx-mnist: $ptrain not found (swift build -c release)" >&2; exit 1; }
[ -x "$python" ] || { echo "onnx-mnist: $python not found (see the header of this script)" >&2; exit 1; }
images=$data/t10k-images.idx3-ubyte
[ -f "$images" ] || images=$data/t10k-images-idx3-ubyte
[ -f "$images" ] || { echo "onnx-mnist: no t10k images in $data" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for config in lenet5-mnist mnist-fast resnet-mnist; do
    start=$(date +%s)
    "$ptrain" train --config "configs/$config.yaml" --data "$data" --epochs 1 --threads "$threads" \
        --output "$work/$config" --quiet > "$work/$config.train.log"
    "$ptrain" predict --checkpoint "$work/$config" --input "$images" --format json --threads "$threads" > "$work/$config.jsonl"
    "$ptrain" export --checkpoint "$work/$config" --output "$work/$config.onnx" --quiet
    accuracy=$(sed -n 's/.*done: \(test_accuracy [0-9.]*%\).*/\1/p' "$work/$config.train.log")
    echo "$config: trained 1 epoch ($accuracy), $(( $(date +%s) - start )) s with predict and export"
    "$python" scripts/onnx-check.py "$work/$config.onnx" --samples "$images" --predictions "$work/$config.jsonl" || status=1
done
exit $status
