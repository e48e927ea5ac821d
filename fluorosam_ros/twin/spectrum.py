"""X-ray tube spectra and the effective energy of a filtered beam.

The unfiltered bremsstrahlung photon spectrum follows Kramers' law (H. A. Kramers, Phil. Mag.
46, 1923): N(E) ~ (E_max - E) / E for E < E_max = kVp. Inherent and added filtration is
applied with aluminium's tabulated attenuation. The default total filtration of 2.5 mm Al is
the IEC 60601-1-3 minimum for tubes above 70 kVp. Characteristic lines are ignored, which is
acceptable for an image-formation model (they carry a few percent of the fluence at 80 kVp).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .materials import density_g_per_cm3, mass_attenuation_cm2_per_g

ALUMINIUM = "Al"


@dataclass(frozen=True)
class Spectrum:
    """Photon fluence per energy bin (normalised to sum 1)."""

    energies_kev: np.ndarray
    fluence: np.ndarray

    def energy_weights(self) -> np.ndarray:
        """Weights of an energy-integrating detector (signal ~ photons x energy), sum 1."""
        weights = self.fluence * self.energies_kev
        return weights / weights.sum()

    def mean_energy_kev(self) -> float:
        return float(np.sum(self.fluence * self.energies_kev))


def aluminium_mu_per_mm(energies_kev: np.ndarray) -> np.ndarray:
    return mass_attenuation_cm2_per_g(ALUMINIUM, energies_kev) * density_g_per_cm3(ALUMINIUM) / 10.0


def kramers_spectrum(kvp: float = 80.0, filtration_mm_al: float = 2.5, bin_kev: float = 2.0,
                     min_kev: float = 15.0) -> Spectrum:
    """A filtered Kramers spectrum with bins centred from `min_kev` to just below `kvp`."""
    if kvp <= min_kev + bin_kev:
        raise ValueError(f"kVp {kvp} too low for a spectrum starting at {min_kev} keV")
    energies = np.arange(min_kev + bin_kev / 2, kvp, bin_kev)
    fluence = (kvp - energies) / energies
    fluence = fluence * np.exp(-aluminium_mu_per_mm(energies) * filtration_mm_al)
    return Spectrum(energies, fluence / fluence.sum())


def half_value_layer_mm_al(spectrum: Spectrum) -> float:
    """Aluminium thickness that halves the detector signal (bisection)."""
    mu = aluminium_mu_per_mm(spectrum.energies_kev)
    weights = spectrum.energy_weights()

    def transmitted(thickness_mm: float) -> float:
        return float(np.sum(weights * np.exp(-mu * thickness_mm)))

    lo, hi = 0.0, 100.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if transmitted(mid) > 0.5 else (lo, mid)
    return (lo + hi) / 2


def effective_energy_kev(spectrum: Spectrum) -> float:
    """Energy of the monoenergetic beam with the same aluminium half-value layer."""
    target_mu = np.log(2.0) / half_value_layer_mm_al(spectrum)
    energies = np.linspace(spectrum.energies_kev.min(), spectrum.energies_kev.max(), 400)
    mu = aluminium_mu_per_mm(energies)  # decreasing with energy in this range
    return float(np.interp(target_mu, mu[::-1], energies[::-1]))
