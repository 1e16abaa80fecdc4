#!/usr/bin/env bash
# Reproduces src/wastenet/assets/model/wastenet-lite0.onnx from the images in ../shared/data.
# On a 2-core CPU the training takes about an hour; on a GPU a few minutes.
set -euo pipefail
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs}
wastenet data split "$DATA/trashnet" "$DATA/web-mixed" --out "$RUNS/data"
wastenet data cache "$RUNS/data/manifest.json" --size 288x384
wastenet train lite0_mixed_75 --set manifest="$RUNS/data/manifest.json" --out "$RUNS/lite0_mixed_75"
wastenet export "$RUNS/lite0_mixed_75/model.safetensors" --format onnx --out "$RUNS/lite0_mixed_75/export"
wastenet verify "$RUNS/lite0_mixed_75/export/model.onnx" --manifest "$RUNS/data/manifest.json"
cp "$RUNS/lite0_mixed_75/export/model.onnx" src/wastenet/assets/model/wastenet-lite0.onnx
