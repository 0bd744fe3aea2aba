"""Scale and reliability: torchrun, kill -9 during training or a checkpoint write, resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maskfocal.checkpoint import load_checkpoint
from maskfocal.engine.distributed import GlobalBatches
from maskfocal.errors import MaskfocalError

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "tiny.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def losses(folder: Path) -> list[float]:
    with (folder / "metrics.csv").open() as file:
        return [float(row["loss"]) for row in csv.DictReader(file)]


@pytest.mark.parametrize("world", [2, 3])
def test_global_batches_split_the_one_process_batches(world):
    one = list(GlobalBatches(20, 6, torch.Generator().manual_seed(4)))
    shares = [list(GlobalBatches(20, 6, torch.Generator().manual_seed(4), rank, world))
              for rank in range(world)]
    assert len(one) == 3 and all(len(s) == 3 for s in shares)
    for step, batch in enumerate(one):
        assert [i for s in shares for i in s[step]] == batch
    assert len({i for batch in one for i in batch}) == 18  # a permutation, 2 left over
    with pytest.raises(MaskfocalError, match="divisible"):
        GlobalBatches(20, 5, torch.Generator(), 0, 2)


def test_torchrun_two_cpu_processes_match_one_process(tmp_path):
    """2 gloo processes x 2 images against 1 process x 4 images, same data order.

    Tolerance: each epoch's mean training loss within 10 %. They are not bit-equal: on the CPU
    each process normalises BatchNorm over its own 2 images (SyncBatchNorm needs CUDA), and
    each loss is normalised by its own process's heads, as torchvision's detectors do.
    """
    common = ["--config", str(TINY), "--quiet", "data.synthetic.test_images=0",
              "train.lr=1e-4", "data.batch_size=4"]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "maskfocal", "train", "--out", str(tmp_path / "two"), *common],
        env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("checkpoints in") == 1  # only rank 0 speaks
    one = subprocess.run([sys.executable, "-m", "maskfocal", "train", "--out",
                          str(tmp_path / "one"), *common], env=ENV, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 2
    for x, y in zip(a, b, strict=True):
        assert abs(x - y) / x < 0.10, (a, b)
    state = load_checkpoint(tmp_path / "two" / "last.pt")
    assert state["step"] == 6 and not any(k.startswith("module.") for k in state["model"])


def test_kill_9_during_training_then_resume(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "maskfocal", "train", "--config", str(TINY), "--out",
               str(out), "--quiet", "data.synthetic.test_images=0", "train.epochs=6"]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # somewhere in the next epochs, or in the middle of a write
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    stopped = load_checkpoint(out / "last.pt")  # complete, whatever the moment of the kill
    assert stopped["epoch"] < 5
    resumed = subprocess.run([*command, "--resume"], env=ENV, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {out / 'last.pt'} at epoch {stopped['epoch'] + 2}" in resumed.stderr
    assert load_checkpoint(out / "last.pt")["epoch"] == 5
    assert [row.split(",")[0] for row in (out / "metrics.csv").read_text().splitlines()[1:]] \
        == [str(epoch) for epoch in range(6)]
    assert not list(out.glob(".*.tmp"))


WRITER = """
import sys, torch
from maskfocal.checkpoint import save_checkpoint
path, n = sys.argv[1], 0
while True:
    n += 1
    save_checkpoint(path, {"model": {"w": torch.full((2_000_000,), float(n))}, "config": {},
                           "n": n})
    print(n, flush=True)
"""


def test_kill_9_during_checkpoint_writes_never_corrupts(tmp_path):
    path = tmp_path / "last.pt"
    for attempt in range(4):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=ENV,
                                   stdout=subprocess.PIPE, text=True)
        process.stdout.readline()  # one complete write at least
        time.sleep(0.05 * attempt)  # then die at varying points of the next writes
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
        state = load_checkpoint(path)
        assert torch.equal(state["model"]["w"], torch.full((2_000_000,), float(state["n"])))
