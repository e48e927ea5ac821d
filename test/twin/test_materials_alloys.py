from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.twin.materials import (
    ALLOYS,
    alloy_linear_attenuation_per_mm,
    alloy_mass_attenuation_cm2_per_g,
)


@pytest.mark.parametrize("element, energy, nist", [
    # NIST XCOM / Hubbell & Seltzer tables, total attenuation with coherent scattering, cm^2/g
    ("Fe", 60.0, 1.205), ("Fe", 100.0, 0.3717), ("Ti", 60.0, 0.7661), ("Ti", 100.0, 0.2721),
])
def test_pure_elements_match_nist(element, energy, nist):
    mu = alloy_mass_attenuation_cm2_per_g({element: 1.0}, energy)[0]
    assert mu == pytest.approx(nist, rel=0.02)


def test_mixture_rule_is_mass_weighted():
    fe, ti = (alloy_mass_attenuation_cm2_per_g({el: 1.0}, [40.0, 80.0]) for el in ("Fe", "Ti"))
    mixed = alloy_mass_attenuation_cm2_per_g({"Fe": 0.25, "Ti": 0.75}, [40.0, 80.0])
    np.testing.assert_allclose(mixed, 0.25 * fe + 0.75 * ti, rtol=1e-12)


def test_steel_attenuates_more_than_titanium_per_mm():
    steel = alloy_linear_attenuation_per_mm("steel_316l", 60.0)[0]
    titanium = alloy_linear_attenuation_per_mm("ti6al4v", 60.0)[0]
    assert steel > 2.0 * titanium
    # 316L is mostly iron at 8.0 g/cm^3: close to pure iron's 1.205 cm^2/g x 0.8 per mm
    assert steel == pytest.approx(1.205 * 0.8, rel=0.08)
    assert alloy_linear_attenuation_per_mm("cocrmo", 60.0)[0] > steel  # Mo and Co
    assert alloy_linear_attenuation_per_mm("aluminium_6061", 60.0)[0] < 0.3 * titanium


def test_attenuation_falls_with_energy():
    for name in ALLOYS:
        mu = alloy_linear_attenuation_per_mm(name, [40.0, 60.0, 80.0, 100.0])
        assert np.all(np.diff(mu) < 0), name


def test_alloy_table_is_consistent():
    for name, alloy in ALLOYS.items():
        assert sum(alloy.mass_fractions.values()) == pytest.approx(1.0, abs=1e-9), name
        assert 2.0 < alloy.density_g_per_cm3 < 9.5 and alloy.reference, name


@pytest.mark.parametrize("fractions", [{"Fe": 0.5}, {"Fe": 1.2, "Cr": -0.2}, {}])
def test_bad_fractions_are_rejected(fractions):
    with pytest.raises(ValueError):
        alloy_mass_attenuation_cm2_per_g(fractions, 60.0)
