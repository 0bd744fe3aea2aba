"""The lineage's rules: when a session's run replaces the shipped model, and when a model
replaces the default (docs/MODEL.md)."""

from __future__ import annotations

from experiments.lineage import default_verdict, may_ship, table


def scores(relative: float, a: float, b: float, scut: float) -> dict:
    return {"scale": 1.5, "threshold": 0.3, "val_relative_mae": relative,
            "per_source": {"part_A": a, "part_B": b, "SCUT-HEAD-PartB": scut}}


def test_a_run_ships_only_when_it_wins_and_once_a_day():
    shipped = scores(0.19, 114, 14.5, 4.8)
    better, worse = scores(0.17, 100, 14.0, 4.5), scores(0.20, 100, 14.0, 6.0)
    assert may_ship(better, shipped, [], "2026-12-06")
    assert not may_ship(worse, shipped, [], "2026-12-06")
    assert not may_ship(shipped, shipped, [], "2026-12-06")  # a tie keeps the shipped one
    today = [{"date": "2026-12-06", "shipped": True}]
    assert not may_ship(better, shipped, today, "2026-12-06")
    assert may_ship(better, shipped, [{"date": "2026-12-05", "shipped": True},
                                      {"date": "2026-12-06", "shipped": False}], "2026-12-06")
    # two sessions on one day: each may ship once
    first = [{"date": "2026-12-06", "session": "2026-12-06", "shipped": True}]
    assert may_ship(better, shipped, first, "2026-12-06b")
    assert not may_ship(better, shipped, [*first, {"date": "2026-12-06", "session":
                                                   "2026-12-06b", "shipped": True}], "2026-12-06b")


def test_the_default_needs_a_lower_mean_and_no_source_ten_percent_worse():
    r18 = scores(0.2669, 161.7, 10.0, 8.4)
    lite0 = scores(0.1868, 114.0, 14.5, 4.8)
    replaces, why = default_verdict(lite0, r18)
    assert not replaces and "part_B (14.50 against 10.00)" in why
    assert default_verdict(scores(0.20, 150, 10.99, 8.0), r18)[0]  # 9.9 % worse: allowed
    assert not default_verdict(scores(0.20, 150, 11.01, 8.0), r18)[0]
    assert not default_verdict(scores(0.27, 150, 9.0, 8.0), r18)[0]  # mean not lower


def test_the_table_has_a_row_per_run():
    first = {"date": "2026-12-01", "run": "crowd_lite0", "started_from": "ImageNet",
             "cpu_hours": 1.0, "cumulative_cpu_hours": 1.0,
             "candidate": scores(0.1868, 114.03, 14.5, 4.8), "shipped_model": None,
             "gain": None, "shipped": True}
    second = {**first, "date": "2026-12-06", "run": "lane", "started_from": "crowd-lite0",
              "cpu_hours": 1.4, "cumulative_cpu_hours": 2.4,
              "candidate": scores(0.20, 120, 15, 5), "shipped_model": first["candidate"],
              "gain": 1 - 0.20 / 0.1868, "shipped": False}
    lines = table([first, second]).splitlines()
    assert len(lines) == 4
    assert "| 1.00 (1.00) | 0.1868 | - | 114.03 / 14.50 / 4.80 | yes |" in lines[2]
    assert "| 1.40 (2.40) | 0.2000 | 0.1868 (+7.1%) | 120.00 / 15.00 / 5.00 | no |" in lines[3]
