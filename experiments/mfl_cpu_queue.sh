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
# and, meanwhile, where the unfinished runs stand (validation readings, the rule's verdict so far):
#
#   python -m experiments.mfl_converged --status --runs /root/grid/runs/mfl_converged
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
#      then FCOS's MFL at MFL.md's start, seed 0, 240 (its own loss converged there). That run
#      did not converge (validation still fell 15 % a quarter), so FCOS's cells cannot be
#      compared at 240 and its ablation candidates stopped there (2026-12-03; the first had 10
#      of 240 minutes): next the same MFL run at 480, then Faster R-CNN's own loss at 480
#      (neither of its seed-0 runs converged at 240: the line through their second halves still
#      fell 19 % and 51 % a quarter).
#   B. Faster R-CNN's MFL there, seeds 0 and 1; CenterNet's own loss at 480 minutes (not
#      converged at 120 or 240); then FCOS's own loss at 480, so that FCOS has one budget if
#      its MFL run converges there.
#      Every 480-minute run only decides whether its detector's cells at 480 (9 runs each, 72
#      CPU hours) are worth queueing on this machine at all; the ablation candidates of every
#      detector wait for that budget.
#   ~32 CPU hours of budget are queued from here (4 runs at 480), ~33 hours on the wall.
set -uo pipefail  # a step that fails leaves the next to run; its failure is in the log
python=${PYTHON:-.venv/bin/python}
export PYTHONPATH=src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
grid() { "$python" -m experiments.mfl_converged --threads 1 "$@"; }
# the budget counts each run's CPU time (train.budget_clock=process): what the end-of-session
# test suite and other work take from a run no longer costs it epochs (a 120-minute CenterNet
# run got 46 epochs beside them, the 240-minute one 166)
shb=(--datasets shanghaitech_b_lite0 --set train.budget_clock=process)

grid --jobs 2 --datasets dense_synthetic --detectors faster_rcnn --variants native mfl \
    --seeds 0 1 --minutes-scale 3

lane_a() {
    grid "${shb[@]}" --detectors faster_rcnn --variants native --seeds 0 1
    grid "${shb[@]}" --detectors fcos --variants mfl --seeds 0
    # MFL.md's start did not converge at 240 (2026-12-03: validation still fell 15 % a quarter),
    # so FCOS's cells at 240 cannot be compared; whether MFL converges at 480 decides whether
    # FCOS's grid moves there (its own loss is rerun at 480 in lane B to keep one budget)
    grid "${shb[@]}" --detectors fcos --variants mfl --seeds 0 --minutes-scale 2
    grid "${shb[@]}" --detectors faster_rcnn --variants native --seeds 0 --minutes-scale 2
}
lane_b() {
    grid "${shb[@]}" --detectors faster_rcnn --variants mfl --seeds 0 1
    # measured first (the order): whether CenterNet's own loss converges at 480 decides
    # whether its 9 cells (72 CPU hours) are queued here at all
    grid "${shb[@]}" --detectors centernet --variants native --seeds 0 --minutes-scale 2
    grid "${shb[@]}" --detectors fcos --variants native --seeds 0 --minutes-scale 2
}
lane_a > >(sed -u 's/^/[A] /') 2>&1 &
lane_b > >(sed -u 's/^/[B] /') 2>&1 &
wait
