"""DRR renderers behind one interface. The CPU renderer (ours, numba Siddon) is the default.

Every renderer takes the same `CArmState` (pose, device geometry, collimation) and returns a
`RenderResult`: the line-integral image, the detector intensity, the exposed field and the
per-structure path lengths (a structure's mask is simply "its path length > 0").
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..geometry.camera import CameraProjection
from ..geometry.carm import CArmState
from ..geometry.collimation import Collimation
from ..geometry.transforms import apply, apply_direction
from .materials import HUMaterialModel
from .patient import Patient
from .siddon import HU_OFFSET, trace_detector
from .spectrum import Spectrum, effective_energy_kev, kramers_spectrum

log = logging.getLogger(__name__)

MM_G_PER_CM3_TO_G_PER_CM2 = 0.1  # (g/cm^3) x mm = 0.1 g/cm^2


@dataclass(frozen=True)
class BeamConfig:
    """`mode`: "mono" at the spectrum's effective energy (same Al half-value layer), or "poly"."""

    mode: str = "mono"
    kvp: float = 80.0
    filtration_mm_al: float = 2.5
    energy_bin_kev: float = 2.0

    def spectrum(self) -> Spectrum:
        return kramers_spectrum(self.kvp, self.filtration_mm_al, self.energy_bin_kev)


@dataclass
class RenderResult:
    line_integral: np.ndarray            # (H, W) float32, -ln(I/I0) without noise; 0 outside the field
    exposed: np.ndarray                  # (H, W) bool, inside the collimated field
    camera: CameraProjection
    structure_names: list[str] = field(default_factory=list)
    path_length_mm: np.ndarray | None = None   # (S, H, W) float32, in `structure_names` order
    mass_path_g_per_cm2: np.ndarray | None = None  # (M, H, W) per material

    def mask(self, name: str) -> np.ndarray:
        if self.path_length_mm is None:
            raise ValueError("this render has no structure path lengths")
        return self.path_length_mm[self.structure_names.index(name)] > 0

    def masks(self) -> dict[str, np.ndarray]:
        return {name: self.mask(name) for name in self.structure_names}


class Renderer(abc.ABC):
    """Common interface of the DRR backends."""

    name: str = "renderer"

    @abc.abstractmethod
    def render(self, state: CArmState, structures: Iterable[str] | str | None = "all") -> RenderResult:
        """Render the patient at `state`. `structures`: "all", a list of names, or None (no masks)."""


class CpuRenderer(Renderer):
    """Our renderer: one Siddon pass gives the image and every structure's path length."""

    name = "cpu"

    def __init__(self, patient: Patient, beam: BeamConfig | None = None,
                 material_model: HUMaterialModel | None = None) -> None:
        self.patient = patient
        self.beam = beam or BeamConfig()
        self.material_model = material_model or HUMaterialModel()
        # Integer HU (the CT's own precision) indexes material and density tables.
        hu = np.clip(np.rint(patient.hu), -HU_OFFSET, HU_OFFSET - 1)
        self._hu_index = (hu.astype(np.int32) + HU_OFFSET).astype(np.uint16)
        table_hu = np.arange(2 ** 16, dtype=np.float32) - HU_OFFSET
        self._material_lut = self.material_model.segment(table_hu)
        self._density_lut = self.material_model.densities(table_hu, self._material_lut)
        if patient.labels is not None:
            dtype = np.uint8 if patient.labels.max(initial=0) < 256 else np.uint16
            self._labels = patient.labels.astype(dtype)
        else:
            self._labels = np.zeros(patient.shape, dtype=np.uint8)
        self._oriented: dict[int, tuple[np.ndarray, np.ndarray, tuple[int, int, int]]] = {}
        self._set_beam_tables()

    def oriented_volume(self, axis: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
        """HU codes and labels with voxel `axis` last in memory (cached), and the axis order."""
        if axis not in self._oriented:
            order = tuple(a for a in range(3) if a != axis) + (axis,)
            self._oriented[axis] = (np.ascontiguousarray(self._hu_index.transpose(order)),
                                    np.ascontiguousarray(self._labels.transpose(order)), order)
        return self._oriented[axis]

    def mu_per_mm(self) -> np.ndarray:
        """Linear attenuation per voxel at the beam's effective energy (1/mm), e.g. for a peer renderer."""
        mu_table = self._mass_attenuation[:, 0][self._material_lut] * self._density_lut / 10.0
        return mu_table.astype(np.float32)[self._hu_index]

    def _set_beam_tables(self) -> None:
        spectrum = self.beam.spectrum()
        if self.beam.mode == "mono":
            self.effective_energy_kev = effective_energy_kev(spectrum)
            self._energy_weights = np.ones(1)
            self._mass_attenuation = self.material_model.mass_attenuation_table(
                np.array([self.effective_energy_kev]))
        elif self.beam.mode == "poly":
            self.effective_energy_kev = effective_energy_kev(spectrum)
            self._energy_weights = spectrum.energy_weights()
            self._mass_attenuation = self.material_model.mass_attenuation_table(spectrum.energies_kev)
        else:
            raise ValueError(f"beam mode must be 'mono' or 'poly', got {self.beam.mode!r}")

    def structure_channels(self, structures: Iterable[str] | str | None) -> tuple[list[str], np.ndarray]:
        """Names in output order and the label value -> channel lookup (-1 = not tracked)."""
        lookup = np.full(int(self._labels.max(initial=0)) + 1, -1, dtype=np.int32)
        if structures is None or self.patient.labels is None:
            return [], lookup
        if isinstance(structures, str):
            if structures != "all":
                raise ValueError(f"structures must be 'all', None or a list of names, got {structures!r}")
            values = [int(v) for v in self.patient.present_labels]
        else:
            values = [self.patient.label_of(name) for name in structures]
        names = []
        for channel, value in enumerate(values):
            if value < len(lookup):
                lookup[value] = channel
            names.append(self.patient.structure_names[value])
        return names, lookup

    def render(self, state: CArmState, structures: Iterable[str] | str | None = "all") -> RenderResult:
        return self.render_camera(state.camera(), state.collimation, structures)

    def render_camera(self, camera: CameraProjection, collimation: Collimation | None = None,
                      structures: Iterable[str] | str | None = "all") -> RenderResult:
        width, height = camera.sensor_width, camera.sensor_height
        collimation = collimation or Collimation.open()
        collimation.validate(width, height)
        exposed = collimation.field_mask(width, height)
        names, lookup = self.structure_channels(structures)
        if not names:
            lookup = np.full(1, -1, dtype=np.int32)
        mass_path = np.zeros((len(self.material_model.materials), height, width), dtype=np.float32)
        label_path = np.zeros((max(len(names), 1), height, width) if names else (1, 1, 1), dtype=np.float32)

        pixel00, col_step, row_step = camera.detector_grid_world()
        voxel_from_world = self.patient.voxel_from_world
        source_vox = apply(voxel_from_world, camera.source_world)
        pixel00_vox = apply(voxel_from_world, pixel00)
        col_vox = apply_direction(voxel_from_world, col_step)
        row_vox = apply_direction(voxel_from_world, row_step)
        centre_ray_vox = pixel00_vox + (width / 2) * col_vox + (height / 2) * row_vox - source_vox
        hu_index, labels, order = self.oriented_volume(int(np.argmax(np.abs(centre_ray_vox))))
        order = list(order)
        trace_detector(
            source_vox[order], pixel00_vox[order], col_vox[order], row_vox[order],
            camera.source_world, pixel00, col_step, row_step,
            exposed, hu_index, self._density_lut, self._material_lut, labels, lookup,
            mass_path, label_path, bool(names))

        mass_path *= MM_G_PER_CM3_TO_G_PER_CM2
        line_integral = self._line_integral(mass_path)
        line_integral[~exposed] = 0.0
        return RenderResult(line_integral, exposed, camera, names,
                            label_path if names else None, mass_path)

    def _line_integral(self, mass_path: np.ndarray) -> np.ndarray:
        # attenuation exponent per energy: (E, H, W) = table^T (E, M) @ mass_path (M, H*W)
        exponent = self._mass_attenuation.T @ mass_path.reshape(mass_path.shape[0], -1)
        if exponent.shape[0] == 1:
            line_integral = exponent[0]
        else:
            transmitted = self._energy_weights @ np.exp(-exponent)
            line_integral = -np.log(np.maximum(transmitted, 1e-30))
        return line_integral.reshape(mass_path.shape[1:]).astype(np.float32)


def build_renderer(name: str, patient: Patient, **kwargs) -> Renderer:
    """Renderer registry: "cpu" (default, ours) or "deepdrr" (optional CUDA backend)."""
    if name == "cpu":
        return CpuRenderer(patient, **kwargs)
    if name == "deepdrr":
        from .deepdrr_backend import DeepDRRRenderer

        return DeepDRRRenderer(patient, **kwargs)
    raise ValueError(f"unknown renderer {name!r}; choose 'cpu' or 'deepdrr'")


def available_renderers() -> Sequence[str]:
    from .deepdrr_backend import deepdrr_unavailable_reason

    return ["cpu"] + ([] if deepdrr_unavailable_reason() else ["deepdrr"])
