"""Leader election by kopf peering: replicas of one Deployment get distinct priorities, oldest first."""

from __future__ import annotations

import time

from yolo_operator.__main__ import auto_priority


def test_older_processes_rank_higher_and_priorities_fit_int64(monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.000)
    older = [auto_priority() for _ in range(50)]
    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.002)  # 2 ms later
    younger = [auto_priority() for _ in range(50)]
    assert min(older) > max(younger), "the longest-running replica leads, whatever the random tie-break"
    assert all(0 < p < 2**63 for p in older + younger), "kopf stores it in the peering object as an integer"
    assert len(set(older)) > 1, "a random tie-break separates replicas started in the same millisecond"
