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
# Lanes, not waves of two: a wave of one leaves a core idle for its whole budget. The lanes
# never share a cell (each names its detectors, variants and seeds), so they never train the
# same folder. Done before this queue (2026-11-30 to 12-03; results in mfl_converged.json):
# Faster R-CNN on the dense synthetic set; every detector's own loss and MFL.md's start at 240
# minutes on ShanghaiTech B; CenterNet's own loss at 120, 240 and 480 (converged only at 480:
# +1.4 % ± 3.2 a quarter, 328 epochs).
#
#   A. CenterNet's MFL at MFL.md's start, seeds 0 and 1, then FCOS's MFL (it did not converge
#      at 240) and Faster R-CNN's own loss (neither seed did at 240), each at 480.
#   B. CenterNet's own loss, seed 1, then its ablation candidates on seed 0 (the validation
#      picks mfl-best from them), then FCOS's own loss at 480 so that FCOS has one budget.
#   Every ShanghaiTech B run here has 480 one-thread CPU minutes (--minutes-scale 2): 8 hours
#   on the wall with both lanes busy, longer than a session (180 minutes). The queue only
#   finishes runs on a machine that keeps /root/grid from one session to the next; on
#   2026-12-03 a new machine came without it, and two runs' last.pt went with the old one
#   (FCOS's MFL at 255 of 480 minutes, FCOS's own loss at about 20).
set -uo pipefail  # a step that fails leaves the next to run; its failure is in the log
python=${PYTHON:-.venv/bin/python}
export PYTHONPATH=src OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
grid() { "$python" -m experiments.mfl_converged --threads 1 "$@"; }
# the budget counts each run's CPU time (train.budget_clock=process): what the end-of-session
# test suite and other work take from a run no longer costs it epochs (a 120-minute CenterNet
# run got 46 epochs beside them, the 240-minute one 166)
shb=(--datasets shanghaitech_b_lite0 --set train.budget_clock=process)

lane_a() {
    grid "${shb[@]}" --detectors centernet --variants mfl --seeds 0 1 --minutes-scale 2
    grid "${shb[@]}" --detectors fcos --variants mfl --seeds 0 --minutes-scale 2
    grid "${shb[@]}" --detectors faster_rcnn --variants native --seeds 0 --minutes-scale 2
}
lane_b() {
    grid "${shb[@]}" --detectors centernet --variants native --seeds 1 --minutes-scale 2
    grid "${shb[@]}" --detectors centernet --variants "mfl box" "mfl w=2" "mfl weighted" \
        "mfl box w=2 weighted" --seeds 0 --minutes-scale 2
    grid "${shb[@]}" --detectors fcos --variants native --seeds 0 --minutes-scale 2
}
lane_a > >(sed -u 's/^/[A] /') 2>&1 &
lane_b > >(sed -u 's/^/[B] /') 2>&1 &
wait
