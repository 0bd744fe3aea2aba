#!/usr/bin/env bash
# The MFL grid's ShanghaiTech B half (experiments/mfl_converged.py) on a lent GPU (the `device`
# tool), in two calls on one warm machine: ShanghaiTech B train (60 MB) and test (47 MB) do not
# travel together within the tool's 64 MiB (the repository goes too; the shipped weights are
# moved out of the tree for these calls).
#
#   data: the carried train split (.device_data/) into /root/data, then a CUDA smoke test
#         (CenterNet and FCOS, bf16 autocast, images augmented on the GPU) on configs/tiny.yaml
#         and a preflight: 12 runs at once for 3 epochs of ShanghaiTech B, each printing its
#         images/s, so a grid that would crawl is seen before its 9 minutes are spent
#   grid  MINUTES: the carried test split (.device_test/) into /root/data, then the grid: CenterNet
#         and FCOS x {own loss, MFL.md's start, the MFL candidates (seed 0), mfl-best} x seeds
#         0 1 2, 12 runs sharing the GPU, each MINUTES of wall clock (the recipe
#         configs/shb_cpu.yaml with a GPU profile: batch 32, lr 4e-3, bf16, images kept and
#         augmented on the GPU, no synthetic pre-training). Records, table, figures and an
#         nvidia-smi log go to $OUT; then, until DEADLINE seconds (560) from the grid's start,
#         --analyse on the GPU adds the why (peak statistics) to the records.
#
# Run from the repository root on the device machine:  bash experiments/gpu_mfl_grid.sh grid 3.25
#
# Seen on a lent H100 (16 cores), 2026-11-26, before the preflight and before mfl_converged.py
# shared the CPU threads out (OMP_NUM_THREADS = cores / runs): the 12 runs of the first wave each
# trained at 2 images/s (one epoch in 3.4 minutes), the GPU 0-6 % busy most of the time; 12
# processes of 16 threads each on 16 cores is the likely cause (not proven: no second try was
# left). Nothing of that attempt is in the results.
# Seen on a lent H200, 2026-11-27, threads shared out: preflight 5-6 epochs a minute per run
# (about 32 images/s each, 12 at once); the grid at 3.4 minutes recorded all 23 runs, the GPU
# 99 % busy: CenterNet 17-26 epochs (34-50 images/s), FCOS's own loss 34-35 (75), FCOS with MFL
# 3-4 (7-8: its targets then cost host round trips per image and pyramid level; rendered on the
# host per batch since), none converged by the rule. Data call 114 s; the grid call ran to its
# 600 s limit with its output lost, because the nvidia-smi logger, left running, held the
# caller's pipe open (now stopped), and --analyse had 25 s: two runs. 753 s of device time.
set -euo pipefail
stage=$1 minutes=${2:-3.25}  # the grid's wall-clock minutes per run
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
    for job in $(seq 12); do  # the grid's load: 12 runs at once, a thread each, 90 s at most
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 timeout 90 python3 -m maskfocal train \
            --config configs/shb_cpu.yaml --out "/root/preflight-$job" --quiet --overwrite \
            data.root=$data data.test_split=null train.max_minutes=1 train.epochs=3 \
            train.device=cuda pretrain.fraction=null data.batch_size=32 train.lr=0.004 \
            train.amp=true train.channels_last=true data.augment_on_device=true \
            data.cache_images=true >/dev/null 2>&1 &
    done
    wait
    head -1 /root/preflight-1/metrics.csv  # a run killed at 90 s (crawling) has no row
    tail -qn 1 /root/preflight-*/metrics.csv | cut -c1-120
    ;;
grid)
    cp -r .device_test/ShanghaiTech/part_B/test_data "$data/"
    ls "$data/train_data/images" | wc -l; ls "$data/test_data/images" | wc -l
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv -l 15 >"$OUT/gpu.log" 2>&1 &
    logger=$!  # stopped at the end: left running, it held the caller's pipe open
    scale=$(python3 -c "print($minutes / 60)")  # shanghaitech_b's budget is 60 CPU minutes
    start=$(date +%s)
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    MASKFOCAL_MACHINE="$gpu (device tool), 12 runs sharing it" \
        python3 -m experiments.mfl_converged --datasets shanghaitech_b \
        --detectors centernet fcos --seeds 0 1 2 --jobs 12 --minutes-scale "$scale" \
        --data-root /root/data --runs /root/runs --results "$OUT/mfl_converged_gpu.json" \
        --set train.device=cuda pretrain.fraction=null data.batch_size=32 train.lr=0.004 \
        train.warmup_steps=50 train.amp=true train.channels_last=true \
        data.augment_on_device=true data.workers=0 data.cache_images=true \
        2>&1 | tee "$OUT/grid.log" || echo "grid: exit status $?"
    left=$((${DEADLINE:-560} - $(date +%s) + start))  # the why (--analyse) in what is left
    if [ "$left" -gt 20 ]; then
        timeout "$left" python3 -m experiments.mfl_converged --analyse --analyse-device cuda \
            --data-root /root/data --runs /root/runs --results "$OUT/mfl_converged_gpu.json" \
            2>&1 | tail -n 30 | tee "$OUT/analyse.log" || true
    fi
    kill "$logger" || true  # already gone: nothing to stop
    ;;
esac
