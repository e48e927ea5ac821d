from __future__ import annotations

import numpy as np
import pytest

from fluorosam_ros.twin.materials import (
    WATER_COMPOUND,
    HUMaterialModel,
    density_g_per_cm3,
    mass_attenuation_cm2_per_g,
)
from fluorosam_ros.twin.spectrum import effective_energy_kev, half_value_layer_mm_al, kramers_spectrum


def test_water_attenuation_matches_nist_xcom():
    # NIST XCOM, water, total with coherent: 0.2059 cm^2/g at 60 keV, 0.1707 at 100 keV
    assert mass_attenuation_cm2_per_g(WATER_COMPOUND, 60.0)[0] == pytest.approx(0.2059, rel=0.01)
    assert mass_attenuation_cm2_per_g(WATER_COMPOUND, 100.0)[0] == pytest.approx(0.1707, rel=0.01)


def test_metals_and_bone_attenuate_more_than_soft_tissue():
    soft = mass_attenuation_cm2_per_g("Tissue, Soft (ICRP)", 50.0)[0]
    assert mass_attenuation_cm2_per_g("Bone, Cortical (ICRP)", 50.0)[0] > soft
    assert mass_attenuation_cm2_per_g("Fe", 50.0)[0] > 5 * soft
    assert density_g_per_cm3("Ti") == pytest.approx(4.5, rel=0.02)


def test_hu_segmentation_and_densities():
    model = HUMaterialModel()
    hu = np.array([-1000.0, -900.0, 0.0, 40.0, 700.0, 1500.0])
    material = model.segment(hu)
    assert [model.materials[m] for m in material] == ["air", "air", "soft_tissue", "soft_tissue", "bone", "bone"]
    density = model.densities(hu, material)
    assert density[0] == pytest.approx(0.0, abs=1e-6)
    assert density[2] == pytest.approx(1.0, rel=0.02)  # water-equivalent
    assert 1.2 < density[5] < 2.2                      # dense cortical bone
    assert np.all(np.diff(density[2:]) > 0)


def test_spectrum_effective_energy_is_sensible():
    spectrum = kramers_spectrum(80.0, 2.5)
    assert spectrum.fluence.sum() == pytest.approx(1.0)
    assert spectrum.energies_kev.max() < 80.0
    assert 30.0 < effective_energy_kev(spectrum) < 60.0
    # more filtration hardens the beam
    assert half_value_layer_mm_al(kramers_spectrum(80.0, 5.0)) > half_value_layer_mm_al(spectrum)
    with pytest.raises(ValueError):
        kramers_spectrum(10.0)
