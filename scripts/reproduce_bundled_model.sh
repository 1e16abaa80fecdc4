#!/usr/bin/env bash
# Reproduces src/wastenet/assets/model/wastenet-lite0.onnx from the images in ../shared/data.
# Three training stages; on a 2-core CPU about two and a quarter hours in all, on a GPU a few minutes.
set -euo pipefail
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs}
M="$RUNS/data/manifest.json"
wastenet data split "$DATA/trashnet" "$DATA/web-mixed" --out "$RUNS/data"
wastenet data cache "$M" --size 75%
wastenet data cache "$M" --size 50%
# stage 1: 10 epochs at 50 % resolution, consolidation and FixRes at 75 %
wastenet train lite0_mixed_75 --set manifest="$M" --out "$RUNS/lite0_mixed_75"
# stage 2: 8 more epochs at 75 % with milder augmentation, FixRes; ends temperature-calibrated
wastenet train lite0_mixed_75_stage2 --set manifest="$M" \
    pretrained="$RUNS/lite0_mixed_75/model.safetensors" --out "$RUNS/lite0_mixed_75_stage2"
# stage 3: 2 epochs on TrashNet alone at 3e-5, selected and calibrated on both sources
wastenet train lite0_mixed_75_stage3 --set manifest="$M" \
    pretrained="$RUNS/lite0_mixed_75_stage2/model.safetensors" --out "$RUNS/lite0_mixed_75_stage3"
B="$RUNS/lite0_mixed_75_stage3/model.safetensors"
wastenet export "$B" --format onnx --out "$RUNS/lite0_mixed_75_stage3/export"
wastenet verify "$RUNS/lite0_mixed_75_stage3/export/model.onnx" --manifest "$M"
cp "$RUNS/lite0_mixed_75_stage3/export/model.onnx" src/wastenet/assets/model/wastenet-lite0.onnx
