"""The shipped Prometheus alerting rules: valid, unit-tested, and about metrics that exist."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from prometheus_client import REGISTRY

# imported for their side effect: each module registers its metrics in the default registry
import app.metrics  # noqa: F401
import docpulse.metrics  # noqa: F401
import workers.metrics  # noqa: F401
from tests.helpers.paths import ROOT

RULES = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: apt-get install prometheus enables these tests"
)


@needs_promtool
def test_the_rules_are_valid() -> None:
    done = subprocess.run(
        [str(PROMTOOL), "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_the_rules_fire_when_they_should_and_only_then() -> None:
    done = subprocess.run(
        [str(PROMTOOL), "test", "rules", "alerts_test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_the_rules_name_is_exported() -> None:
    exported = set()
    for family in REGISTRY.collect():
        exported.add(family.name)
        exported.update(sample.name.removesuffix("_total") for sample in family.samples)
    named = set(re.findall(r"docpulse_[a-z_]+", (RULES / "alerts.yml").read_text()))
    missing = {name for name in named if name.removesuffix("_total") not in exported}
    assert not missing, f"alert rules name metrics nobody exports: {sorted(missing)}"
