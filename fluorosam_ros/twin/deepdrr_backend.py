"""Optional DeepDRR renderer (GPL-3 library, imported, never vendored): CUDA, nvcc and EGL needed.

It takes the same `CArmState` as the CPU renderer and hands its geometry to
`deepdrr.MobileCArm` through `deepdrr_carm_kwargs` / `deepdrr_move_kwargs`, which are pure
and tested against real DeepDRR parameters without a GPU. DeepDRR renders organ masks only
from meshes, so per-structure path lengths come from our CPU pass (labels only).
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import shutil
from functools import lru_cache
from typing import Iterable

import numpy as np

from ..geometry.carm import CArmConfig, CArmPose, CArmState
from .materials import HUMaterialModel
from .patient import Patient
from .renderer import BeamConfig, CpuRenderer, Renderer, RenderResult

# our material names -> DeepDRR's
DEEPDRR_MATERIALS = {"air": "air", "soft_tissue": "soft tissue", "bone": "bone"}


@lru_cache(maxsize=1)
def deepdrr_unavailable_reason() -> str | None:
    """None when the DeepDRR backend can run here, else why not (cheap checks first)."""
    if importlib.util.find_spec("deepdrr") is None:
        return "deepdrr is not installed (scripts/setup_deepdrr_venv.sh makes a venv with it)"
    if shutil.which("nvcc") is None:
        return "nvcc is not on PATH (DeepDRR compiles its CUDA kernels at run time)"
    if ctypes.util.find_library("EGL") is None:
        return "no EGL library (DeepDRR's mesh rendering needs NVIDIA EGL)"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as error:  # no driver, no cupy, wrong CUDA version
        return f"CUDA is unavailable: {error}"
    return None


def deepdrr_carm_kwargs(config: CArmConfig) -> dict:
    """`deepdrr.MobileCArm(**kwargs)` for our configuration (world_from_device as a 4x4 array)."""
    return {
        "source_to_detector_distance": float(config.source_to_detector_distance_mm),
        "source_to_isocenter_vertical_distance": float(config.source_to_isocenter_distance_mm),
        "source_to_isocenter_horizontal_offset": float(config.source_to_isocenter_horizontal_offset_mm),
        "sensor_width": int(config.sensor_width_px),
        "sensor_height": int(config.sensor_height_px),
        "pixel_size": float(config.pixel_size_mm),
        "min_alpha": float(config.min_alpha_deg),
        "max_alpha": float(config.max_alpha_deg),
        "min_beta": float(config.min_beta_deg),
        "max_beta": float(config.max_beta_deg),
        "gamma": float(config.gamma_deg),
        "rotate_camera_left": bool(config.rotate_camera_left),
        "degrees": True,
        "world_from_device": np.asarray(config.world_from_device, dtype=float),
    }


def config_from_deepdrr_kwargs(kwargs: dict) -> CArmConfig:
    """The inverse of `deepdrr_carm_kwargs` (DeepDRR's defaults fill what is missing)."""
    defaults = CArmConfig()
    get = kwargs.get
    return CArmConfig(
        source_to_detector_distance_mm=get("source_to_detector_distance", defaults.source_to_detector_distance_mm),
        source_to_isocenter_distance_mm=get("source_to_isocenter_vertical_distance",
                                            defaults.source_to_isocenter_distance_mm),
        source_to_isocenter_horizontal_offset_mm=get("source_to_isocenter_horizontal_offset", 0.0),
        sensor_width_px=get("sensor_width", defaults.sensor_width_px),
        sensor_height_px=get("sensor_height", defaults.sensor_height_px),
        pixel_size_mm=get("pixel_size", defaults.pixel_size_mm),
        min_alpha_deg=get("min_alpha", defaults.min_alpha_deg), max_alpha_deg=get("max_alpha", defaults.max_alpha_deg),
        min_beta_deg=get("min_beta", defaults.min_beta_deg), max_beta_deg=get("max_beta", defaults.max_beta_deg),
        gamma_deg=get("gamma", 0.0), rotate_camera_left=get("rotate_camera_left", True),
        world_from_device=np.eye(4) if get("world_from_device") is None else np.asarray(get("world_from_device")),
    )


def deepdrr_move_kwargs(pose: CArmPose) -> dict:
    """`MobileCArm.move_to(**kwargs)`: our isocenter is in the world frame."""
    return {"isocenter_in_world": list(pose.isocenter_mm), "alpha": float(pose.alpha_deg),
            "beta": float(pose.beta_deg), "degrees": True}


class DeepDRRRenderer(Renderer):
    """DeepDRR's CUDA projector behind our interface."""

    name = "deepdrr"

    def __init__(self, patient: Patient, beam: BeamConfig | None = None,
                 material_model: HUMaterialModel | None = None, config: CArmConfig | None = None,
                 step_mm: float = 0.1) -> None:
        reason = deepdrr_unavailable_reason()
        if reason:
            raise RuntimeError(f"the DeepDRR backend cannot run here: {reason}")
        import deepdrr
        from deepdrr import geo

        self._deepdrr, self._geo = deepdrr, geo
        self.beam = beam or BeamConfig()
        self.labels = CpuRenderer(patient, self.beam, material_model)
        model = self.labels.material_model
        material = model.segment(patient.hu)
        density = model.densities(patient.hu, material)
        materials = {DEEPDRR_MATERIALS[name]: material == index for index, name in enumerate(model.materials)}
        self.volume = deepdrr.Volume(density, materials, anatomical_from_IJK=geo.FrameTransform(patient.world_from_voxel),
                                     anatomical_coordinate_system="LPS")
        self.step_mm = step_mm
        self._projector = None
        self._config: CArmConfig | None = None

    def _projector_for(self, config: CArmConfig):
        if self._projector is None or self._config != config:
            kwargs = deepdrr_carm_kwargs(config)
            kwargs["world_from_device"] = self._geo.FrameTransform(kwargs["world_from_device"])
            self.carm = self._deepdrr.MobileCArm(**kwargs)
            if self._projector is not None:
                self._projector.free()
            spectrum = self.beam.spectrum()
            self._projector = self._deepdrr.Projector(
                self.volume, carm=self.carm, step=self.step_mm, neglog=True,
                spectrum=np.stack([spectrum.energies_kev * 1000.0, spectrum.fluence], axis=1))
            self._projector.initialize()
            self._config = config
        return self._projector

    def render(self, state: CArmState, structures: Iterable[str] | str | None = "all") -> RenderResult:
        projector = self._projector_for(state.config)
        self.carm.move_to(**deepdrr_move_kwargs(state.pose))
        line_integral = np.asarray(projector.project(), dtype=np.float32)
        if state.config.mirror_columns:
            line_integral = line_integral[:, ::-1]
        masks = self.labels.render(state, structures)  # exposed field and path lengths
        line_integral = np.where(masks.exposed, line_integral, 0.0).astype(np.float32)
        return RenderResult(line_integral, masks.exposed, masks.camera, masks.structure_names,
                            masks.path_length_mm, None)

    def close(self) -> None:
        if self._projector is not None:
            self._projector.free()
            self._projector = None
