"""Learning-rate schedules against hand-computed values."""
import math

import pytest

from hiddennets.validation import config_from_dict
from hiddennets.optim import schedule_factor


def factors(schedule, epochs=10):
    cfg = config_from_dict({"epochs": epochs, "schedule": schedule})
    f = schedule_factor(cfg.schedule, cfg.epochs)
    return [f(e) for e in range(epochs)]


def test_cosine_without_warmup():
    got = factors({"name": "cosine"}, epochs=4)
    assert got == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])


def test_linear_warmup_then_cosine():
    got = factors({"name": "cosine", "warmup_epochs": 2}, epochs=6)
    assert got[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert got[4] == pytest.approx(0.5)  # halfway through the 4 post-warmup epochs


def test_multistep_and_constant():
    assert factors({"name": "multistep", "milestones": [3, 6], "gamma": 0.1}, epochs=8) == pytest.approx(
        [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])
    assert factors({"name": "constant"}, epochs=3) == [1.0, 1.0, 1.0]
