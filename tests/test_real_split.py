"""The fixed validation split of ../shared/data_real (scripts/real_data.py) that training never reads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import real_data


def test_split_is_a_function_of_the_name_alone():
    names = [f"image_{i}" for i in range(2000)]
    chosen = [n for n in names if real_data.is_validation(n)]
    assert chosen == [n for n in reversed(names) if real_data.is_validation(n)][::-1]
    assert 0.08 < len(chosen) / len(names) < 0.12
    assert real_data.is_validation("usiigaci_set6") and not real_data.is_validation("usiigaci_set1")


@pytest.mark.skipif(not (real_data.REAL / "usiigaci_phase").is_dir(),
                    reason="../shared/data_real is absent")
def test_every_source_validates_and_trains_on_disjoint_images():
    train = {(s, p.name) for s, _, p, _ in real_data.real_pairs("train")}
    val = {(s, p.name) for s, _, p, _ in real_data.real_pairs("val")}
    assert not train & val
    for source in real_data.SOURCES:
        n_val = sum(s == source for s, _ in val)
        n_all = n_val + sum(s == source for s, _ in train)
        assert n_val >= 1 and n_val <= 0.2 * n_all, source
