"""Device specifications: cross-section stiffness, French sizes and tip shapes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from surgsim.errors import ScenarioError
from surgsim.instruments import CATALOGUE, TIP_SHAPES, DeviceSpec, french, inch


def test_french_and_inch_conversions():
    assert french(5) == pytest.approx(1.6667e-3, rel=1e-4)
    assert french(3) == pytest.approx(1.0e-3)
    assert inch(0.035) == pytest.approx(0.889e-3)
    with pytest.raises(ScenarioError, match="French"):
        french(-1)
    with pytest.raises(ScenarioError, match="French"):
        french(float("nan"))


def test_stiffness_matches_hand_computation():
    spec = DeviceSpec(name="tube", outer_diameter=2.0e-3, inner_diameter=1.0e-3,
                      youngs_modulus=1.0e9, density=1000.0)
    # I = pi (D^4 - d^4) / 64 = pi (16 - 1) 1e-12 / 64 = 7.3631e-13 m^4
    assert spec.second_moment == pytest.approx(7.3631e-13, rel=1e-4)
    assert spec.EI == pytest.approx(7.3631e-4, rel=1e-4)
    # A = pi (4 - 1) 1e-6 / 4 = 2.3562e-6 m^2
    assert spec.EA == pytest.approx(2356.2, rel=1e-4)
    assert spec.linear_density == pytest.approx(2.3562e-3, rel=1e-4)
    wire = CATALOGUE["guidewire_035"]
    assert wire.inner_diameter == 0.0
    assert wire.EI == pytest.approx(4.0e9 * math.pi * 0.889e-3**4 / 64, rel=1e-9)
    # catalogue catheters are 5 Fr with a 0.038 in lumen, EI about 1.7e-4 N m^2
    cobra = CATALOGUE["cobra_5fr"]
    assert cobra.outer_diameter == pytest.approx(1.6667e-3, rel=1e-4)
    assert 1.0e-4 < cobra.EI < 3.0e-4


def test_catalogue_has_the_required_devices():
    for name in ("angled_5fr", "cobra_5fr", "simmons_5fr", "guidewire_035"):
        assert CATALOGUE[name].name == name
    assert CATALOGUE["guidewire_035"].kind == "guidewire"
    assert CATALOGUE["guidewire_035"].tip_shape == "j"
    assert {s.tip_shape for s in CATALOGUE.values()} <= set(TIP_SHAPES)


@pytest.mark.parametrize(
    ("name", "degrees"),
    [("angled_5fr", 45.0), ("cobra_5fr", 110.0), ("simmons_5fr", 135.0),
     ("pigtail_5fr", 360.0), ("guidewire_035", 180.0), ("straight_5fr", 0.0)],
)
def test_rest_curvature_integrates_to_the_shape_angle(name, degrees):
    spec = CATALOGUE[name]
    kappa = spec.rest_curvature()
    assert kappa.shape == (spec.n_nodes, 2)
    assert np.all(kappa[:, 1] == 0.0)  # planar shapes
    total = math.degrees(kappa[:, 0].sum() * spec.segment_length)
    assert total == pytest.approx(degrees, abs=1e-9)
    # the shape lives in the distal tip_length (plus one dual cell)
    shaped = np.nonzero(kappa[:, 0])[0]
    if degrees:
        assert shaped.max() * spec.segment_length <= spec.tip_length + spec.segment_length


def test_rest_curvature_is_resolution_independent():
    """The J's 3 mm radius survives a change of node count: integrating the discrete
    curvature gives the same tip position within a fraction of a segment."""
    def tip_xy(spec: DeviceSpec) -> np.ndarray:
        h = spec.segment_length
        turn = spec.rest_curvature()[:, 0] * h
        # walk from the hub (+x) toward the tip, turning at each node
        heading, p = 0.0, np.zeros(2)
        for i in range(spec.n_nodes - 1, 0, -1):
            heading += turn[i]
            p = p + h * np.array([math.cos(heading), math.sin(heading)])
        return p - np.array([spec.length, 0.0])

    coarse = CATALOGUE["guidewire_035"]
    fine = dataclasses.replace(coarse, n_nodes=600)
    a, b = tip_xy(coarse), tip_xy(fine)
    # a 3 mm J: the tip ends about 2 R = 6 mm to the side
    assert b[1] == pytest.approx(6e-3, abs=0.3e-3)
    assert np.linalg.norm(a - b) < coarse.segment_length


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"tip_shape": "hook"}, "tip_shape"), ({"kind": "stent"}, "kind"),
     ({"inner_diameter": 2e-3}, "inner_diameter"), ({"youngs_modulus": -1.0}, "youngs_modulus"),
     ({"n_nodes": 4}, "n_nodes"), ({"tip_length": 0.4}, "tip_length"),
     ({"tip_shape": "j", "tip_angle": math.pi, "tip_length": 4e-3}, "increase n_nodes")],
)
def test_invalid_specs_are_refused_with_the_field_named(changes, match):
    with pytest.raises(ScenarioError, match=match):
        dataclasses.replace(CATALOGUE["angled_5fr"], **changes)
