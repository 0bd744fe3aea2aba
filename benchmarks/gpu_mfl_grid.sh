#!/usr/bin/env bash
# The MFL grid's ShanghaiTech B half (benchmarks/mfl_converged.py) on a lent GPU (the `device`
# tool), in two calls on one warm machine: ShanghaiTech B train (60 MB) and test (47 MB) do not
# travel together within the tool's 64 MiB (the repository goes too; the shipped weights are
# moved out of the tree for these calls).
#
#   data  MINUTES: the carried train split (.device_data/) into /root/data, then a CUDA smoke test
#         (CenterNet and FCOS, bf16 autocast, images augmented on the GPU) on configs/tiny.yaml
#   grid  MINUTES: the carried test split (.device_test/) into /root/data, then the grid: CenterNet
#         and FCOS x {own loss, MFL.md's start, the MFL candidates (seed 0), mfl-best} x seeds
#         0 1 2, 12 runs sharing the GPU, each MINUTES of wall clock (the recipe
#         configs/shb_cpu.yaml with a GPU profile: batch 32, lr 4e-3, bf16, images kept and
#         augmented on the GPU, no synthetic pre-training). Records, table, figures and an
#         nvidia-smi log go to $OUT.
#
# Run from the repository root on the device machine:  bash benchmarks/gpu_mfl_grid.sh grid 3.25
set -euo pipefail
stage=$1 minutes=${2:-3.25}
data=/root/data/ShanghaiTech/part_B
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$data"
case $stage in
data)
    cp -r .device_data/ShanghaiTech/part_B/train_data "$data/"
    nproc; nvidia-smi -L
    python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"
    for model in centernet fcos; do
        python3 -m maskfocal train --config configs/tiny.yaml --out "/root/smoke-$model" \
            --quiet --overwrite "model.name=$model" loss.name=mfl train.device=cuda \
            train.amp=true data.augment_on_device=true data.cache_images=true \
            train.channels_last=true &
    done
    wait
    cat /root/smoke-*/test_metrics.json | tr -d '\n '; echo
    ;;
grid)
    cp -r .device_test/ShanghaiTech/part_B/test_data "$data/"
    ls "$data/train_data/images" | wc -l; ls "$data/test_data/images" | wc -l
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 >"$OUT/gpu.log" &
    scale=$(python3 -c "print($minutes / 60)")  # shanghaitech_b's budget is 60 CPU minutes
    MASKFOCAL_MACHINE="NVIDIA H100 (device tool), 12 runs sharing it" \
        python3 benchmarks/mfl_converged.py --datasets shanghaitech_b \
        --detectors centernet fcos --seeds 0 1 2 --jobs 12 --minutes-scale "$scale" \
        --data-root /root/data --runs /root/runs --results "$OUT/mfl_converged_gpu.json" \
        --set train.device=cuda pretrain.fraction=null data.batch_size=32 train.lr=0.004 \
        train.warmup_steps=50 train.amp=true train.channels_last=true \
        data.augment_on_device=true data.workers=0 data.cache_images=true \
        2>&1 | tee "$OUT/grid.log"
    ;;
esac
