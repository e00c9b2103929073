#!/usr/bin/env bash
# Everything a CUDA machine is needed for, in one run: the CUDA tests, U-Net bodies
# trained side by side (benchmarks/train_gpu.py), per-image speed against the naive
# baseline (benchmarks/speed.py) and the interleaved BSDS timing of per-image mode
# against the fine-tuned U-Net (benchmarks/unet_bsds.py).  Logs and models go to OUT.
#
#   bash benchmarks/gpu_session.sh BSDS500_DIR OUT [TRAIN_SECONDS]
#
# BSDS500_DIR needs images/train, and images/val + groundTruth/val for the timing
# (its first 10 images).  Runs from the repository root; needs no installation.
set -u
bsds=$1 out=$2 secs=${3:-300}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 benchmarks/train_gpu.py "$bsds/images/train" --out "$out" --seconds "$secs" >"$out/train.log" 2>&1 &
training=$!
# -c /dev/null: the project's pytest settings filter warnings of packages (napari's) absent here
python3 -m pytest -c /dev/null --rootdir . -q -p no:cacheprovider -m cuda -W ignore::pytest.PytestUnknownMarkWarning \
    tests/test_engine.py tests/test_train.py tests/test_tiling.py tests/test_unet.py 2>&1 | tee -a "$out/session.log" | tail -8
wait $training
cat "$out/train.log"
rm -f "$out"/.*.calib.pt
timeout 120 python3 benchmarks/speed.py --device cuda --sizes 512,1024 --iterations 300 2>&1 | tee -a "$out/session.log"
timeout 60 python3 benchmarks/speed.py --device cuda --sizes 256x256x256 --no-baseline 2>&1 | tee -a "$out/session.log"
timeout 60 python3 benchmarks/unet_bsds.py --bsds "$bsds" --timing-only --timing 10 --timing-classes 32 \
    --timing-regions merged --skip-direct --ft "iterations=20,init='kmeans'" 2>&1 | tee -a "$out/session.log"
