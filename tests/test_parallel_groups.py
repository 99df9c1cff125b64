"""The suite's own parallelism: a module marked `xdist_group` runs on one worker (its shared fixture, e.g. a Ray
cluster, is then set up once and never stopped under another worker's tests)."""

from __future__ import annotations

import os

import pytest


@pytest.mark.xdist_group("probe")
def test_a_grouped_test_carries_its_group_to_the_scheduler(request: pytest.FixtureRequest) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("only under pytest-xdist (the suite's default, `-n auto --dist loadgroup`)")
    assert request.config.option.loadgroup
    assert request.node.nodeid.endswith("@probe")  # what LoadGroupScheduling groups by
