"""Threads that fit the machine: the CPUs a process may use (affinity and cgroup quota), one
rule for torch and ONNX Runtime, ``--threads``."""

from __future__ import annotations

import os

import pytest
import torch

from maskfocal.device import set_threads, usable_cpus
from maskfocal.errors import MaskfocalError


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cgroup_quota_limits_the_cpus(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == affinity  # no cgroup files: the affinity mask
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == affinity  # no quota
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cpus(tmp_path) == 1  # half a CPU still gets one thread
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert usable_cpus(tmp_path) == min(affinity, 2)
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert usable_cpus(tmp_path) == affinity


def test_set_threads_and_the_flag(tmp_path, restore_threads):
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    assert set_threads() == usable_cpus() and torch.get_num_threads() == usable_cpus()
    assert set_threads(share=64) == 1  # shared by more processes than CPUs: one each
    with pytest.raises(MaskfocalError, match="--threads must be at least 1"):
        set_threads(0)
    from maskfocal.cli import main
    from tests.conftest import write_image
    from tests.test_inference import checkpoint

    photo = write_image(tmp_path / "a.png")
    assert main(["count", str(photo), "--checkpoint", str(checkpoint(tmp_path)),
                 "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    assert main(["count", str(photo), "--threads", "0"]) == 2
