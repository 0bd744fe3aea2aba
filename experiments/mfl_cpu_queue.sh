#!/usr/bin/env bash
# The MFL grid's open cells on this project's 2-core CPU: two lanes of one-thread runs side by
# side (the way every shanghaitech_b_lite0 run trained). Each step is experiments/mfl_converged.py,
# which skips finished cells and continues a stopped run from its last.pt, so after a stop the
# same command picks up where the queue was. Run it from a clone outside the folder that holds
# the checkout, with shared/ linked beside it: a machine can hand a later session a fresh
# checkout folder (with it went a worktree beside main and two runs' 67 minutes of last.pt), and
# a clone, unlike a worktree, does not need the checkout's .git:
#
#   git clone -q . /root/grid && ln -sfn "$PWD/../shared" /root/shared && cd /root/grid
#   PYTHON=$OLDPWD/.venv/bin/python nohup bash experiments/mfl_cpu_queue.sh >> ../grid.log 2>&1 &
#
# then, in the main checkout after each run, merge its results (table and figures follow) and
# commit them:
#
#   python -m experiments.mfl_converged --merge /root/grid/experiments/results/mfl_converged.json
#
# Lanes, not waves of two: the budgets differ (two own-loss runs take 480 minutes, the rest
# 240), and a wave of one leaves a core idle for its whole budget. The lanes never share a
# cell (each names its detectors, variants and seeds), so they never train the same folder.
#
#   0. Faster R-CNN on the dense synthetic set, own loss and MFL.md's start, seeds 0 and 1, 60
#      one-thread minutes a run (--minutes-scale 3; CenterNet and FCOS had 20 two-thread
#      minutes): it trains ~0.4x as fast as CenterNet, and 60 minutes give it ~30 epochs, as
#      CenterNet had 39.
#   A. Faster R-CNN's own loss on ShanghaiTech B (pretrained Lite0), seeds 0 and 1, 240 min;
#      then FCOS's seed-0 cells at 240 (its own loss converged there): MFL.md's start and two
#      of the three ablation candidates, whose best on validation is mfl-best (seed 0's is the
#      candidate's own run); then mfl-best of seed 1 (named by the candidates: the chosen one
#      is the only seed-1 cell among them; nothing runs while a candidate is missing); last,
#      Faster R-CNN's own loss at 480 minutes: neither of its seed-0 runs converged at 240
#      (the line through their second halves still fell 19 % and 51 % a quarter), so its
#      ablation candidates wait, as CenterNet's do, for the budget at which its own loss does.
#   B. Faster R-CNN's MFL there, seeds 0 and 1; CenterNet's own loss at 480 minutes (not
#      converged at 120 or 240; moved ahead of FCOS's cells on 2026-12-03, when FCOS's third
#      candidate had 20 of its 240 minutes, which it keeps in its last.pt); then FCOS's third
#      candidate, its seed-1 own loss and MFL.
#      The two 480-minute runs only decide whether each detector's cells at 480 or more
#      (9 runs each, 72 CPU hours) are worth queueing on this machine at all.
#   32 and 28 CPU hours of budget in all (28 and 24 left after the seed-0 Faster R-CNN pair),
#   ~35 and ~30 hours on the wall for what is left (a run gets ~0.8 of its core beside the
#   other lane).
set -uo pipefail  # a step that fails leaves the next to run; its failure is in the log
python=${PYTHON:-.venv/bin/python}
export PYTHONPATH=src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
grid() { "$python" -m experiments.mfl_converged --threads 1 "$@"; }
# the budget counts each run's CPU time (train.budget_clock=process): what the end-of-session
# test suite and other work take from a run no longer costs it epochs (a 120-minute CenterNet
# run got 46 epochs beside them, the 240-minute one 166)
candidates=("mfl w=2" "mfl weighted" "mfl w=2 weighted")  # FCOS's (Faster R-CNN's wait)
shb=(--datasets shanghaitech_b_lite0 --set train.budget_clock=process)

grid --jobs 2 --datasets dense_synthetic --detectors faster_rcnn --variants native mfl \
    --seeds 0 1 --minutes-scale 3

lane_a() {
    grid "${shb[@]}" --detectors faster_rcnn --variants native --seeds 0 1
    grid "${shb[@]}" --detectors fcos --variants mfl "mfl w=2" "mfl weighted" --seeds 0
    grid "${shb[@]}" --detectors fcos --variants "${candidates[@]}" --seeds 1
    grid "${shb[@]}" --detectors faster_rcnn --variants native --seeds 0 --minutes-scale 2
}
lane_b() {
    grid "${shb[@]}" --detectors faster_rcnn --variants mfl --seeds 0 1
    # measured first (the order): whether CenterNet's own loss converges at 480 decides
    # whether its 9 cells (72 CPU hours) are queued here at all
    grid "${shb[@]}" --detectors centernet --variants native --seeds 0 --minutes-scale 2
    grid "${shb[@]}" --detectors fcos --variants "mfl w=2 weighted" --seeds 0
    grid "${shb[@]}" --detectors fcos --variants native mfl --seeds 1
}
lane_a > >(sed -u 's/^/[A] /') 2>&1 &
lane_b > >(sed -u 's/^/[B] /') 2>&1 &
wait
