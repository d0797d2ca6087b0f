from __future__ import annotations

import pytest

from ablate.train.schedule import lr_at


def test_poly():
    assert lr_at(0, 100, 0.01) == pytest.approx(0.01)
    assert lr_at(50, 100, 0.01, power=0.9) == pytest.approx(0.01 * 0.5**0.9)
    assert lr_at(100, 100, 0.01) == 0.0


def test_warmup_then_poly():
    assert lr_at(0, 100, 0.1, warmup_steps=10) == pytest.approx(0.01)
    assert lr_at(9, 100, 0.1, warmup_steps=10) == pytest.approx(0.1)
    assert lr_at(10, 100, 0.1, warmup_steps=10) == pytest.approx(0.1)
    assert lr_at(55, 100, 0.1, warmup_steps=10) == pytest.approx(0.1 * 0.5**0.9)


def test_cosine_and_constant():
    assert lr_at(50, 100, 0.2, "cosine") == pytest.approx(0.1)
    assert lr_at(70, 100, 0.2, "constant") == 0.2
