"""Subnet configs, canonical forms and names."""
import random

import pytest

from models.space import SubnetSpace, make_divisible
from models.zoo import SPECS


def test_make_divisible_matches_once_for_all():
    assert [make_divisible(256 * w, 8) for w in (0.65, 0.8, 1.0)] == [168, 208, 256]
    assert make_divisible(round(2048 * 0.35), 8) == 720
    assert make_divisible(20, 8) == 24


def test_names_round_trip_and_are_canonical():
    space = SubnetSpace(SPECS["default"])
    rng = random.Random(0)
    for _ in range(50):
        cfg = space.sample(rng)
        name = space.name(cfg)
        assert space.parse(name) == space.canonical(cfg)
        assert space.name(space.parse(name)) == name


def test_inactive_choices_do_not_change_the_name(tiny_spec):
    space = SubnetSpace(tiny_spec)
    cfg = space.smallest()
    other = dict(cfg, e=list(cfg["e"]))
    other["e"][1] = 0.5         # block 1 of stage 0 is inactive at depth choice 0
    assert space.name(other) == space.name(cfg)


@pytest.mark.parametrize("bad, msg", [
    ({"d": [0, 0], "e": [0.25] * 6, "w": [0, 0, 0, 0]}, "config['d']"),
    ({"d": [0, 0, 0], "e": [0.3] * 6, "w": [0, 0, 0, 0]}, "config['e']"),
    ({"d": [0, 0, 0], "e": [0.25] * 6, "w": [0, 0, 0, 2]}, "config['w']"),
    ({"d": [0, 0, 0]}, "keys d, e, w"),
])
def test_bad_configs_get_specific_errors(bad, msg, tiny_spec):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        SubnetSpace(tiny_spec).validate(bad)


def test_malformed_name_is_rejected(tiny_spec):
    with pytest.raises(ValueError, match="malformed subnet name"):
        SubnetSpace(tiny_spec).parse("d1-e2")
