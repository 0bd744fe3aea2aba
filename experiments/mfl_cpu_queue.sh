#!/usr/bin/env bash
# The MFL grid's open cells on this project's 2-core CPU, in order, two runs at a time with one
# thread each (the way every shanghaitech_b_lite0 run trained). Each step is
# experiments/mfl_converged.py, which skips finished cells and continues a stopped run from its
# last.pt, so after a stop the same command picks up where the queue was:
#
#   git worktree add --detach ../wt-grid HEAD && cd ../wt-grid
#   PYTHON=../main/.venv/bin/python nohup bash experiments/mfl_cpu_queue.sh >> ../wt-grid.log 2>&1 &
#
# (PYTHON: the checkout's environment, default .venv/bin/python; a worktree has none of its own)
#
# then copy experiments/results/mfl_converged.json back to the main checkout after each run
# (`python -m experiments.mfl_converged --report` there) and commit it.
#
#   1. Faster R-CNN on the dense synthetic set, own loss and MFL.md's start, seeds 0 and 1, 60
#      one-thread minutes a run (--minutes-scale 3; CenterNet and FCOS had 20 two-thread
#      minutes): it trains ~0.4x as fast as CenterNet, and 60 minutes gave it 30 epochs (1.9
#      images/s), where CenterNet had 39.
#   2. Faster R-CNN on ShanghaiTech B (pretrained Lite0), own loss and MFL, seeds 0 and 1, 240.
#   3. FCOS's grid on ShanghaiTech B at 240 minutes (its own loss converged there).
#   4. CenterNet's own loss on ShanghaiTech B at 480 minutes (not converged at 120 or 240).
set -uo pipefail  # a step that fails leaves the next to run; its failure is in the log
python=${PYTHON:-.venv/bin/python}
export PYTHONPATH=src
grid() { "$python" -m experiments.mfl_converged --jobs 2 --threads 1 "$@"; }

grid --datasets dense_synthetic --detectors faster_rcnn --variants native mfl --seeds 0 1 \
    --minutes-scale 3
grid --datasets shanghaitech_b_lite0 --detectors faster_rcnn --variants native mfl --seeds 0 1
grid --datasets shanghaitech_b_lite0 --detectors fcos --seeds 0 1
grid --datasets shanghaitech_b_lite0 --detectors centernet --variants native --seeds 0 \
    --minutes-scale 2
