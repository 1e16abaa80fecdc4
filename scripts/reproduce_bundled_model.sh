#!/usr/bin/env bash
# Reproduces the bundled model (src/wastenet/assets/model/) from the images in ../shared/data:
# the FP32 ONNX (three training stages; on a 2-core CPU about two and a quarter hours in all,
# on a GPU a few minutes), then the OpenVINO INT8 engine made from that ONNX and verified
# against it (NNCF accuracy control; about 5 minutes on 2 cores).
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
# The fast engine: OpenVINO INT8 from the FP32 ONNX, layers returned to float until val top-1
# is within 0.3 points; then verified on val + test pooled (wastenet run only ever picks an
# engine whose row in verify.json passed). ONNX Runtime's INT8 (--format ort-int8) lost
# 1.6 points there and does not ship.
A=src/wastenet/assets/model
wastenet export "$A/wastenet-lite0.onnx" --format openvino-int8 --calib-manifest "$M" \
    --calib-count 300 --max-drop 0.3 --out "$A"
wastenet verify "$A/wastenet-lite0.int8.xml" --manifest "$M" --split val test --out "$A"
rm -f "$A/export.json" "$A/verify.md"
