"""Attenuation of tissues and metals from real tables (xraylib, NIST/ICRP compositions).

The CT is split into materials by HU thresholds and each voxel gets a mass density, so that
line integrals can be formed at any photon energy:

    mu(E) = (mu/rho)_material(E) * rho_voxel

Densities follow from the definition of the Hounsfield unit,
HU = 1000 * (mu - mu_water) / mu_water, evaluated at the CT scanner's effective energy:
mu_voxel(E_ct) = mu_water(E_ct) * (1 + HU/1000) and rho = mu_voxel(E_ct) / (mu/rho)_material(E_ct).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

# Material name -> NIST compound name in xraylib (compositions from ICRP Publication 23/89 and
# NIST's X-ray attenuation database, as tabulated by xraylib).
TISSUE_COMPOUNDS = {
    "air": "Air, Dry (near sea level)",
    "soft_tissue": "Tissue, Soft (ICRP)",
    "bone": "Bone, Cortical (ICRP)",
}
WATER_COMPOUND = "Water, Liquid"


@lru_cache(maxsize=256)
def _mass_attenuation_scalar(compound: str, energy_kev: float) -> float:
    import xraylib

    return float(xraylib.CS_Total_CP(compound, float(energy_kev)))


def mass_attenuation_cm2_per_g(compound: str, energies_kev: np.ndarray | float) -> np.ndarray:
    """Total mass attenuation (coherent + incoherent + photoelectric), cm^2/g.

    `compound` is a NIST compound name known to xraylib or a chemical formula ("Fe", "TiAl6V4").
    """
    energies = np.atleast_1d(np.asarray(energies_kev, dtype=float))
    return np.array([_mass_attenuation_scalar(compound, e) for e in energies])


def density_g_per_cm3(compound: str) -> float:
    """Nominal density of a NIST compound, or of a pure element given by its symbol."""
    import xraylib

    try:
        return float(xraylib.GetCompoundDataNISTByName(compound)["density"])
    except ValueError:
        return float(xraylib.ElementDensity(xraylib.SymbolToAtomicNumber(compound)))


@dataclass(frozen=True)
class HUMaterialModel:
    """HU -> (material index, density). Thresholds as in DeepDRR's "conventional" segmentation
    (Unberath et al., MICCAI 2018): air below -800 HU, bone above 350 HU, soft tissue between.
    `ct_effective_energy_kev`: a 120 kVp CT beam has an effective energy near 70 keV
    (Bushberg et al., The Essential Physics of Medical Imaging, 3rd ed., ch. 10)."""

    materials: tuple[str, ...] = ("air", "soft_tissue", "bone")
    air_max_hu: float = -800.0
    bone_min_hu: float = 350.0
    ct_effective_energy_kev: float = 70.0
    compounds: dict[str, str] = field(default_factory=lambda: dict(TISSUE_COMPOUNDS))

    def segment(self, hu: np.ndarray) -> np.ndarray:
        """Material index per voxel (uint8), indices into `self.materials`."""
        index = np.ones(hu.shape, dtype=np.uint8)
        index[hu <= self.air_max_hu] = self.materials.index("air")
        index[hu > self.bone_min_hu] = self.materials.index("bone")
        return index

    def densities(self, hu: np.ndarray, material_index: np.ndarray) -> np.ndarray:
        """Mass density per voxel, g/cm^3 (float32), clipped at 0."""
        e_ct = self.ct_effective_energy_kev
        mu_water = mass_attenuation_cm2_per_g(WATER_COMPOUND, e_ct)[0] * 1.0  # water: 1 g/cm^3
        mu_voxel = mu_water * (1.0 + hu.astype(np.float32) / 1000.0)
        per_material = np.array(
            [mass_attenuation_cm2_per_g(self.compounds[m], e_ct)[0] for m in self.materials],
            dtype=np.float32)
        density = mu_voxel / per_material[material_index]
        return np.clip(density, 0.0, None).astype(np.float32)

    def mass_attenuation_table(self, energies_kev: np.ndarray) -> np.ndarray:
        """(n_materials, n_energies) mass attenuation, cm^2/g."""
        return np.stack([mass_attenuation_cm2_per_g(self.compounds[m], energies_kev)
                         for m in self.materials])


# ---- implant and instrument alloys ---------------------------------------------------------
# Nominal compositions (mass fractions, balance element last) and densities. Minor elements
# below ~0.5 % are folded into the balance: at diagnostic energies they change mu/rho by far
# less than the spread allowed within each standard.


@dataclass(frozen=True)
class Alloy:
    name: str
    mass_fractions: dict[str, float]
    density_g_per_cm3: float
    reference: str


ALLOYS: dict[str, Alloy] = {
    "ti6al4v": Alloy(
        "Ti-6Al-4V ELI", {"Al": 0.06, "V": 0.04, "Ti": 0.90}, 4.43,
        "ASTM F136 (Al 5.5-6.5 %, V 3.5-4.5 %, Ti balance); density 4.43 g/cm^3"),
    "ti6al7nb": Alloy(
        "Ti-6Al-7Nb", {"Al": 0.06, "Nb": 0.07, "Ti": 0.87}, 4.52,
        "ASTM F1295 (Al 5.5-6.5 %, Nb 6.5-7.5 %, Ti balance); density 4.52 g/cm^3"),
    "steel_316l": Alloy(
        "316L stainless steel",
        {"Cr": 0.175, "Ni": 0.13, "Mo": 0.025, "Mn": 0.02, "Fe": 0.65}, 8.0,
        "ASTM F138 (Cr 17-19 %, Ni 13-15 %, Mo 2.25-3 %, Mn <= 2 %, Fe balance); 8.0 g/cm^3"),
    "steel_420": Alloy(
        "420 martensitic stainless steel (instruments)", {"Cr": 0.13, "C": 0.003, "Fe": 0.867},
        7.74, "ASTM A276 / ISO 7153-1 type 420 (Cr 12-14 %, C >= 0.15 %); 7.74 g/cm^3"),
    "cocrmo": Alloy(
        "Co-28Cr-6Mo", {"Cr": 0.285, "Mo": 0.06, "Mn": 0.005, "Co": 0.65}, 8.3,
        "ASTM F75 / F1537 (Cr 27-30 %, Mo 5-7 %, Co balance); 8.3 g/cm^3"),
    "aluminium_6061": Alloy(
        "aluminium 6061", {"Mg": 0.01, "Si": 0.006, "Cu": 0.003, "Cr": 0.002, "Al": 0.979},
        2.70, "ASTM B221 6061 (Mg 0.8-1.2 %, Si 0.4-0.8 %, Cu 0.15-0.4 %); 2.70 g/cm^3"),
}


@lru_cache(maxsize=1024)
def _element_mass_attenuation(symbol: str, energy_kev: float) -> float:
    import xraylib

    return float(xraylib.CS_Total(xraylib.SymbolToAtomicNumber(symbol), float(energy_kev)))


def alloy_mass_attenuation_cm2_per_g(mass_fractions: dict[str, float],
                                     energies_kev: np.ndarray | float) -> np.ndarray:
    """Mixture rule: (mu/rho)_alloy = sum_i w_i (mu/rho)_i, total cross-sections from xraylib.

    Fractions must sum to 1 within 1 % (they are then renormalised), so a typo in a
    composition cannot silently scale the attenuation."""
    total = sum(mass_fractions.values())
    if not mass_fractions or abs(total - 1.0) > 0.01 or min(mass_fractions.values()) < 0:
        raise ValueError(f"mass fractions must be non-negative and sum to 1, got {mass_fractions}")
    energies = np.atleast_1d(np.asarray(energies_kev, dtype=float))
    return np.array([sum(w * _element_mass_attenuation(el, e) for el, w in mass_fractions.items())
                     for e in energies]) / total


def alloy_linear_attenuation_per_mm(alloy: str, energies_kev: np.ndarray | float) -> np.ndarray:
    """Linear attenuation of one of `ALLOYS` at its nominal density, 1/mm."""
    spec = ALLOYS[alloy]
    mass_attenuation = alloy_mass_attenuation_cm2_per_g(spec.mass_fractions, energies_kev)
    return mass_attenuation * spec.density_g_per_cm3 / 10.0  # (cm^2/g)(g/cm^3) = 1/cm
