"""`fluorosam evaluate-control`: the positioning and collimation loop, end to end, judged by
ground truth (issue 6, "Evaluation harness").

The request set (generated, deterministic from a seed; no file to keep in step):
- `count` requests (default 50) cycle through `STRUCTURES` (24 names: organs, lungs as
  vocabulary groups such as "lung_left", vessels, vertebrae, ribs, shoulder-girdle bones; every
  one has >= `MIN_VOXELS` voxels in the default patient's CT, which covers the chest and the
  upper abdomen) and through `VIEWS` ("ap", "lateral", "oblique_left", "oblique_right",
  "cranial", "caudal", and "" = keep the current beam direction), each in its own seeded order,
  so every structure and every view appears about equally often and the pairs vary;
- each starts from a random pose: the isocenter uniform in the central half of the CT's box
  (per axis), alpha and beta uniform in +-`start_angle_deg` (30); the target may or may not be
  in the first image (`start_visible_fraction` says how much of it was);
- each runs under a freshly injected twin-to-patient registration error
  (`RegistrationErrorConfig`, default 15 mm / 5 deg, its seed derived from the set's seed and
  the request's index), rotated about the target's true centroid (so the error there is exactly
  the translation), as `TwinPrior.with_injected_error(..., structure=...)` does.

Per request and segmenter (the bundled FluoroSAM model; ground-truth masks as the upper bound),
a fresh simulated C-arm (`RenderedCArm`, moves instantly) and a fresh `ViewAcquisition` run the
loop. The metrics are computed against ground truth, never the loop's own estimates:
- end-to-end success, on the last image the loop acquired (what the surgeon is shown):
  the true target centroid (mean of the twin's structure points under the true registration)
  projects within 10% of the image width of the image centre, AND >= 95% of the true target
  mask (rendered at the final pose without the collimator) lies inside the final collimated
  field, AND the beam is within 5 deg of the requested view (the view's direction recomputed
  from the TRUE structure; the start beam for ""). A request that never moved the C-arm fails;
- the 3-D centroid error (localised vs true) and the 3-D box precision/recall (the localised
  oriented box vs the true structure's, `box_precision_recall`);
- the collimated area as a fraction of the full field (a dose proxy), acquisitions, wall time
  of `ViewAcquisition.run` (the C-arm moves instantly, so this is compute: rendering, which is
  the simulated acquisition, plus the loop's own work; both are reported).
The loop's own verdict is recorded beside the ground-truth one, so self-reported successes
that ground truth rejects are counted.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..control.acquisition import AcquireRequest, ViewAcquisition, keep_direction
from ..control.anatomy import Target, resolve_target
from ..control.collimation import coverage
from ..control.config import PlannerConfig
from ..control.image_registration import ImageRegistrar
from ..control.ports import PredictorSegmenter, RenderedCArm, TruthSegmenter
from ..control.structure import LocalisedStructure, box_precision_recall
from ..control.twin_prior import RegistrationErrorConfig, TwinPrior, sample_registration_error
from ..control.views import named_view
from ..geometry.carm import CArmConfig, CArmGeometry, CArmPose, CArmState
from ..geometry.transforms import angle_between_deg, apply
from ..twin.patient import Patient

log = logging.getLogger(__name__)

# Candidate targets: twin labels and vocabulary groups, all in the default patient's CT.
STRUCTURES = (
    "heart", "liver", "spleen", "stomach", "pancreas", "kidney_left", "kidney_right",
    "lung_left", "lung_right", "lung_middle_lobe_right", "aorta", "esophagus", "trachea", "sternum",
    "vertebrae_T4", "vertebrae_T8", "vertebrae_T12", "vertebrae_L1", "rib_left_6", "rib_right_8",
    "scapula_left", "scapula_right", "clavicula_left", "clavicula_right",
)
VIEWS = ("ap", "lateral", "oblique_left", "oblique_right", "cranial", "caudal", "")
MIN_VOXELS = 5000

# IPCAI 2025 (cadaver): the published anchor; the goals (simulation, bundled model).
IPCAI_2025 = {"success": 0.84, "centroid_error_mm": 51.7, "centroid_error_sd_mm": 30.8,
              "box_precision": 0.26, "box_recall": 0.70}
GOALS = {"success": 0.95, "centroid_error_mm": 10.0, "box_precision": 0.6, "box_recall": 0.9,
         "collimated_area_fraction": 0.40, "coverage": 0.95, "seconds_per_request": 2.0}
SEGMENTER_LABELS = {"model": "FluoroSAM (bundled model)", "truth": "ground-truth masks (upper bound)"}


# ---- the request set ------------------------------------------------------------------------
@dataclass(frozen=True)
class ControlRequest:
    index: int
    structure: str
    view: str                          # "" = keep the start beam direction
    isocenter_mm: tuple[float, float, float]
    alpha_deg: float
    beta_deg: float
    error_seed: int
    translation_mm: float = 15.0
    rotation_deg: float = 5.0

    @property
    def start_pose(self) -> CArmPose:
        return CArmPose(tuple(self.isocenter_mm), self.alpha_deg, self.beta_deg)

    @property
    def error(self) -> RegistrationErrorConfig:
        return RegistrationErrorConfig(self.translation_mm, self.rotation_deg, self.error_seed)

    @property
    def label(self) -> str:
        return f"{self.structure} {self.view or 'current'}"


def label_counts(patient: Patient) -> np.ndarray:
    """Voxels per label of the patient's label map."""
    return np.bincount(patient.labels.ravel())


def structure_voxels(patient: Patient, name: str, counts: np.ndarray | None = None) -> int:
    """Voxels of `name` (a label or a vocabulary group) in the patient's label map (0 if absent)."""
    try:
        target = resolve_target(name, patient.structure_names.values())
    except Exception:  # unknown, or not in this twin
        return 0
    counts = label_counts(patient) if counts is None else counts
    labels = [patient.label_of(member) for member in target.members]
    return int(sum(counts[label] for label in labels if label < len(counts)))


def available_structures(patient: Patient, candidates: Sequence[str] = STRUCTURES,
                         min_voxels: int = MIN_VOXELS) -> list[str]:
    """The candidates that the patient's CT holds with at least `min_voxels` voxels."""
    counts = label_counts(patient)
    return [name for name in candidates if structure_voxels(patient, name, counts) >= min_voxels]


def carm_config(patient: Patient, image_size: int = 256, margin_mm: float = 150.0) -> CArmConfig:
    """As carm_sim sets the C-arm up for a patient: isocenter travel = the CT's box + 150 mm."""
    corners = patient.corners_world()
    return CArmConfig.for_supine_patient(
        mirror_columns=True, isocenter_min_mm=tuple(corners.min(axis=0) - margin_mm),
        isocenter_max_mm=tuple(corners.max(axis=0) + margin_mm)).with_image_size(image_size)


def request_set(patient: Patient, count: int = 50, seed: int = 0, structures: Sequence[str] = STRUCTURES,
                views: Sequence[str] = VIEWS, translation_mm: float = 15.0, rotation_deg: float = 5.0,
                start_angle_deg: float = 30.0, start_region_fraction: float = 0.5) -> list[ControlRequest]:
    """The held-out request set (see the module docstring); the same for the same arguments."""
    if count < 1:
        raise ValueError("count must be >= 1")
    names = available_structures(patient, structures)
    missing = sorted(set(structures) - set(names))
    if missing:
        log.warning("structures not in this patient (or too small), left out: %s", ", ".join(missing))
    if not names:
        raise ValueError("none of the structures is in this patient's CT")
    geometry = CArmGeometry(carm_config(patient))
    corners = patient.corners_world()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2 * start_region_fraction

    def cycled(items: Sequence[str], stream: int) -> list[str]:
        # one seeded permutation after another: each item appears equally often (+-1), and the
        # first n requests of a larger set are the set of n (separate streams per quantity)
        rng = np.random.default_rng([seed, stream])
        order: list[str] = []
        while len(order) < count:
            order += [items[i] for i in rng.permutation(len(items))]
        return order[:count]

    structure_order, view_order = cycled(names, 1), cycled(list(views), 2)
    requests = []
    for index in range(count):
        rng = np.random.default_rng([seed, 3, index])
        for _ in range(100):  # the region and angles lie well inside the limits: 1 draw in practice
            isocenter = centre + rng.uniform(-1.0, 1.0, 3) * half
            alpha, beta = rng.uniform(-start_angle_deg, start_angle_deg, 2)
            pose = CArmPose(tuple(float(v) for v in isocenter), float(alpha), float(beta))
            if not geometry.limit_violations(pose):
                break
        else:
            raise ValueError("could not draw a start pose within the C-arm's limits")
        requests.append(ControlRequest(index, structure_order[index], view_order[index],
                                       tuple(round(float(v), 3) for v in isocenter),
                                       round(float(alpha), 3), round(float(beta), 3),
                                       int(seed) * 100_003 + index, translation_mm, rotation_deg))
    return requests


# ---- ground-truth metrics -------------------------------------------------------------------
@dataclass(frozen=True)
class SuccessCriteria:
    max_centring_fraction: float = 0.10   # of the image width
    min_coverage: float = 0.95            # of the true (uncollimated) target mask inside the field
    max_angle_error_deg: float = 5.0


def centring_fraction(state: CArmState, point_world) -> float:
    """Distance of `point_world`'s projection from the image centre / the image width (inf if
    the point is behind the source)."""
    camera = state.camera()
    point = np.asarray(point_world, dtype=float).reshape(1, 3)
    if float(camera.depth_mm(point)[0]) <= 0:
        return math.inf
    uv = camera.project(point)[0]
    width, height = state.config.sensor_width_px, state.config.sensor_height_px
    return float(np.hypot(uv[0] - width / 2, uv[1] - height / 2) / width)


def true_coverage(truth_mask: np.ndarray, state: CArmState) -> float:
    """Fraction of the true (uncollimated) target mask inside `state`'s collimated field; 0 when
    the target is not in the image at all (`coverage` alone would call an empty mask covered)."""
    mask = np.asarray(truth_mask, dtype=bool)
    if not mask.any():
        return 0.0
    return coverage(mask, state.collimation)


def point_coverage(points_world: np.ndarray, state: CArmState) -> float:
    """Fraction of the true structure's points projecting inside the collimated field (also
    counts parts off the detector, which no mask can show)."""
    camera = state.camera()
    points = np.asarray(points_world, dtype=float).reshape(-1, 3)
    uv = np.floor(camera.project(points)).astype(np.int64)
    width, height = state.config.sensor_width_px, state.config.sensor_height_px
    field = state.collimation.field_mask(width, height)
    inside = (camera.depth_mm(points) > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) \
        & (uv[:, 1] < height)
    inside[inside] = field[uv[inside, 1], uv[inside, 0]]
    return float(inside.mean())


def view_angle_error(view: str, true_structure: LocalisedStructure, start: CArmState, final: CArmState,
                     planner: PlannerConfig) -> float:
    """Angle (deg) between the final beam and the requested view, the view defined on the TRUE
    structure (its axes decide AP/lateral of elongated anatomy); "" asks for the start beam.
    Reversible views (lateral) accept either sense."""
    requested = named_view(view, true_structure, planner.views) if view else keep_direction(start)
    achieved = final.geometry.principal_ray_world(final.pose)
    error = angle_between_deg(achieved, requested.direction_world)
    return float(min(error, 180.0 - error)) if requested.reversible else float(error)


def judge(centring: float, covered: float, angle_error_deg: float,
          criteria: SuccessCriteria = SuccessCriteria()) -> tuple[bool, list[str]]:
    """(success, the criteria that failed: "off_centre", "coverage", "view_angle")."""
    failed = []
    if not centring <= criteria.max_centring_fraction:  # NaN fails
        failed.append("off_centre")
    if not covered >= criteria.min_coverage:
        failed.append("coverage")
    if not angle_error_deg <= criteria.max_angle_error_deg:
        failed.append("view_angle")
    return not failed, failed


@dataclass
class RequestRecord:
    index: int
    segmenter: str
    structure: str
    view: str
    success: bool                      # ground truth, on the final image
    failed_criteria: list[str]         # or ["loop:<reason>"] when the C-arm never moved
    loop_success: bool                 # the loop's own verdict
    loop_failure_reason: str
    loop_message: str
    start_visible_fraction: float      # of the true structure's points on the detector at the start
    centring_fraction: float           # true centroid's projection off the image centre / width
    coverage: float                    # true target mask inside the final field
    point_coverage: float              # true structure points inside the final field
    view_angle_error_deg: float
    centroid_error_mm: float
    box_precision: float
    box_recall: float
    prior_centroid_error_mm: float     # the injected error at the target's centroid
    prior_box_precision: float         # the uncorrected twin's box (what fusion starts from)
    prior_box_recall: float
    collimated_area_fraction: float
    acquisitions: int
    wall_s: float                      # ViewAcquisition.run
    render_s: float                    # of which: rendering (the simulated acquisitions)
    localisation_source: str = ""
    loop_centring_fraction: float = math.nan
    loop_coverage: float = math.nan
    loop_view_angle_error_deg: float = math.nan
    stage_seconds: dict = field(default_factory=dict)
    final_pose: list = field(default_factory=list)   # [x, y, z, alpha, beta]


# ---- the evaluator --------------------------------------------------------------------------
@dataclass(frozen=True)
class ControlEvalConfig:
    requests: int = 50
    seed: int = 0
    image_size: int = 256
    segmenters: tuple[str, ...] = ("model", "truth")
    localisation_mode: str = ""        # "" = the planner config's
    translation_mm: float = math.nan   # NaN = the planner config's twin_error
    rotation_deg: float = math.nan
    start_angle_deg: float = 30.0
    criteria: SuccessCriteria = field(default_factory=SuccessCriteria)


SegmenterFactory = Callable[[RenderedCArm], object]


class ControlEvaluator:
    """Runs the request set with each segmenter and scores it against ground truth."""

    def __init__(self, patient: Patient, renderer, detector, config: ControlEvalConfig | None = None,
                 planner: PlannerConfig | None = None, predictor=None) -> None:
        self.patient, self.renderer, self.detector = patient, renderer, detector
        self.config = config or ControlEvalConfig()
        planner = planner or PlannerConfig.from_yaml()
        if self.config.localisation_mode:
            planner = replace(planner, localisation_mode=self.config.localisation_mode)
        self.planner = planner
        self.predictor = predictor
        unknown = set(self.config.segmenters) - set(SEGMENTER_LABELS)
        if unknown:
            raise ValueError(f"unknown segmenter(s) {sorted(unknown)}; use {sorted(SEGMENTER_LABELS)}")
        if "model" in self.config.segmenters and predictor is None:
            raise ValueError("the 'model' segmenter needs a predictor")
        self.carm_config = carm_config(patient, self.config.image_size)
        self.truth_prior = TwinPrior(patient)   # the true registration: ground truth
        self._truth: dict[str, LocalisedStructure] = {}
        self._registrar: ImageRegistrar | None = None

    def requests(self) -> list[ControlRequest]:
        c, error = self.config, self.planner.twin_error
        translation = error.translation_mm if math.isnan(c.translation_mm) else c.translation_mm
        rotation = error.rotation_deg if math.isnan(c.rotation_deg) else c.rotation_deg
        return request_set(self.patient, c.requests, c.seed, translation_mm=translation, rotation_deg=rotation,
                           start_angle_deg=c.start_angle_deg)

    def truth(self, name: str) -> LocalisedStructure:
        if name not in self._truth:
            self._truth[name] = self.truth_prior.localise(name, 1.0)
        return self._truth[name]

    def image_registrar(self) -> ImageRegistrar | None:
        """One registrar for every request (as planner_node keeps one): building the twin's
        reduced CTs is set-up, not a request's work."""
        if self._registrar is None and self.planner.localisation_mode == "fused" \
                and self.planner.image_registration.enabled:
            self._registrar = ImageRegistrar(self.patient, self.planner.image_registration)
        return self._registrar

    def segmenter(self, kind: str, carm: RenderedCArm):
        return PredictorSegmenter(self.predictor) if kind == "model" else TruthSegmenter(carm)

    def run(self, requests: Sequence[ControlRequest] | None = None, progress: bool = True) -> "ControlReport":
        from tqdm import tqdm

        requests = list(self.requests() if requests is None else requests)
        report = ControlReport(self.config, self.planner, requests)
        jobs = [(kind, request) for kind in self.config.segmenters for request in requests]
        bar = tqdm(jobs, desc="evaluate-control", unit="request", disable=not progress)
        for kind, request in bar:
            record = self.run_one(request, kind)
            report.records.append(record)
            done = [r for r in report.records if r.segmenter == kind]
            bar.set_postfix_str(f"{kind}: success {np.mean([r.success for r in done]):.0%}, "
                                f"last {record.structure}/{record.view or 'current'} "
                                f"{'ok' if record.success else ','.join(record.failed_criteria)}")
        return report

    def run_one(self, request: ControlRequest, kind: str) -> RequestRecord:
        truth = self.truth(request.structure)
        target: Target = resolve_target(request.structure, self.patient.structure_names.values())
        start = CArmState(self.carm_config, request.start_pose)
        carm = RenderedCArm(self.renderer, self.detector, start, np.random.default_rng([self.config.seed, request.index]))
        error = sample_registration_error(request.error, truth.centroid_world)
        prior = self.truth_prior.with_registration(error)  # shares the twin's point cache
        prior_structure = prior.localise(request.structure)
        loop = ViewAcquisition(carm, self.segmenter(kind, carm), self.planner, prior, self.image_registrar())
        started = time.perf_counter()
        try:
            outcome = loop.run(AcquireRequest(request.structure, request.view))
        except Exception as exc:  # a bug in the loop must not end the evaluation
            log.exception("request %d (%s) raised", request.index, request.label)
            outcome = None
            crash = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - started

        final = None
        if outcome is not None and outcome.final_state is not None:
            final = outcome.final_state
        elif carm.moves > 0:  # the loop moved, then failed: the surgeon sees the last image
            final = carm.state
        estimate = outcome.structure if outcome is not None else None
        nan = math.nan
        centring = covered = points_in = angle = area = nan
        if final is not None:
            centring = centring_fraction(final, truth.centroid_world)
            covered = true_coverage(carm.truth_mask(target, final, collimated=False), final)
            points_in = point_coverage(truth.points_world, final)
            angle = view_angle_error(request.view, truth, start, final, self.planner)
            area = final.collimation.area_fraction(final.config.sensor_width_px, final.config.sensor_height_px)
        success, failed = judge(centring, covered, angle, self.config.criteria)
        if final is None:
            reason = outcome.failure_reason if outcome is not None else "exception"
            failed = [f"loop:{reason or 'unknown'}"]
        precision = recall = centroid_error = nan
        if estimate is not None:
            centroid_error = float(np.linalg.norm(estimate.centroid_world - truth.centroid_world))
            precision, recall = box_precision_recall(estimate.box, truth.box)
        prior_precision, prior_recall = box_precision_recall(prior_structure.box, truth.box)
        stages = dict(outcome.stage_seconds) if outcome is not None else {}
        visible = point_coverage(truth.points_world, start)
        return RequestRecord(
            request.index, kind, request.structure, request.view, bool(success), failed,
            bool(outcome.success) if outcome is not None else False,
            outcome.failure_reason if outcome is not None else "exception",
            outcome.message if outcome is not None else crash,
            visible, centring, covered, points_in, angle, centroid_error, precision, recall,
            float(np.linalg.norm(apply(error, truth.centroid_world) - truth.centroid_world)),
            prior_precision, prior_recall, area,
            int(outcome.acquisitions) if outcome is not None else carm.frames, wall, float(stages.get("move", 0.0)),
            estimate.source if estimate is not None else "",
            outcome.centring_fraction if outcome is not None else nan,
            outcome.coverage if outcome is not None else nan,
            outcome.view_angle_error_deg if outcome is not None else nan,
            stages, list(final.pose.as_array().tolist()) if final is not None else [])


# ---- the report -----------------------------------------------------------------------------
def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray([v for v in values], dtype=float)
    return array[np.isfinite(array)]


def _mean(values: Iterable[float]) -> float:
    array = _finite(values)
    return float(array.mean()) if len(array) else math.nan


def summarise(records: Sequence[RequestRecord], criteria: SuccessCriteria = SuccessCriteria()) -> dict:
    """Aggregate one segmenter's records."""
    n = len(records)
    if n == 0:
        return {"n": 0}
    errors = _finite(r.centroid_error_mm for r in records)
    covered = [r for r in records if r.coverage >= criteria.min_coverage]
    walls = _finite(r.wall_s for r in records)
    failures: Counter = Counter()
    for record in records:
        failures.update(record.failed_criteria)
    return {
        "n": n,
        "success": float(np.mean([r.success for r in records])),
        "loop_reported_success": float(np.mean([r.loop_success for r in records])),
        "loop_success_rejected_by_truth": int(sum(r.loop_success and not r.success for r in records)),
        "loop_failure_but_truth_success": int(sum(r.success and not r.loop_success for r in records)),
        "centroid_error_mm": float(errors.mean()) if len(errors) else math.nan,
        "centroid_error_sd_mm": float(errors.std()) if len(errors) else math.nan,
        "centroid_error_median_mm": float(np.median(errors)) if len(errors) else math.nan,
        "localised": int(len(errors)),
        "box_precision": _mean(r.box_precision for r in records),
        "box_recall": _mean(r.box_recall for r in records),
        "prior_centroid_error_mm": _mean(r.prior_centroid_error_mm for r in records),
        "prior_box_precision": _mean(r.prior_box_precision for r in records),
        "prior_box_recall": _mean(r.prior_box_recall for r in records),
        "coverage_ok": float(np.mean([r.coverage >= criteria.min_coverage for r in records])),
        "collimated_area_fraction": _mean(r.collimated_area_fraction for r in records),
        "collimated_area_fraction_at_coverage": _mean(r.collimated_area_fraction for r in covered),
        "acquisitions": float(np.mean([r.acquisitions for r in records])),
        "wall_s": float(walls.mean()) if len(walls) else math.nan,
        "wall_median_s": float(np.median(walls)) if len(walls) else math.nan,
        "wall_p90_s": float(np.percentile(walls, 90)) if len(walls) else math.nan,
        "render_s": _mean(r.render_s for r in records),
        "compute_excluding_render_s": _mean(r.wall_s - r.render_s for r in records),
        "start_visible": float(np.mean([r.start_visible_fraction > 0.5 for r in records])),
        "failures": dict(sorted(failures.items())),
    }


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.0f}%"


def _num(value: float, digits: int = 2) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


@dataclass
class ControlReport:
    config: ControlEvalConfig
    planner: PlannerConfig
    requests: list[ControlRequest]
    records: list[RequestRecord] = field(default_factory=list)

    def by_segmenter(self) -> dict[str, list[RequestRecord]]:
        grouped: dict[str, list[RequestRecord]] = {}
        for record in self.records:
            grouped.setdefault(record.segmenter, []).append(record)
        return grouped

    def summary(self) -> dict:
        return {kind: summarise(records, self.config.criteria) for kind, records in self.by_segmenter().items()}

    def table(self) -> str:
        mode = self.planner.localisation_mode
        lines = ["| method | end-to-end success | 3-D centroid error (mm) | box precision | box recall | "
                 "collimated area (at coverage ≥95%) | acquisitions | time per request (s) | n |",
                 "|---|---|---|---|---|---|---|---|---|",
                 f"| IPCAI 2025 (cadaver) | {_pct(IPCAI_2025['success'])} | {IPCAI_2025['centroid_error_mm']:.1f} ± "
                 f"{IPCAI_2025['centroid_error_sd_mm']:.1f} | {IPCAI_2025['box_precision']:.2f} | "
                 f"{IPCAI_2025['box_recall']:.2f} | – | – | – | |",
                 f"| goal (simulation, bundled model) | ≥{_pct(GOALS['success'])} | ≤{GOALS['centroid_error_mm']:.0f} | "
                 f"≥{GOALS['box_precision']:.1f} | ≥{GOALS['box_recall']:.1f} | "
                 f"≤{_pct(GOALS['collimated_area_fraction'])} | – | ≤{GOALS['seconds_per_request']:.0f} "
                 "(excl. motion) | |"]
        summary = self.summary()
        for kind in self.config.segmenters:
            s = summary.get(kind)
            if not s or not s["n"]:
                continue
            lines.append(
                f"| {SEGMENTER_LABELS[kind]}, {mode} | {_pct(s['success'])} | {_num(s['centroid_error_mm'], 1)} ± "
                f"{_num(s['centroid_error_sd_mm'], 1)} (median {_num(s['centroid_error_median_mm'], 1)}) | "
                f"{_num(s['box_precision'])} | {_num(s['box_recall'])} | "
                f"{_pct(s['collimated_area_fraction_at_coverage'])} ({_pct(s['coverage_ok'])} reach ≥95%) | "
                f"{s['acquisitions']:.1f} | {_num(s['wall_s'])} (rendering {_num(s['render_s'])}, "
                f"p90 {_num(s['wall_p90_s'])}) | {s['n']} |")
        lines += ["", "Failures (a request can fail several ground-truth criteria; `loop:<reason>` = the "
                      "C-arm never moved):", ""]
        kinds = [k for k in self.config.segmenters if k in summary]
        reasons = sorted({reason for k in kinds for reason in summary[k]["failures"]})
        lines += ["| reason | " + " | ".join(SEGMENTER_LABELS[k] for k in kinds) + " |",
                  "|---|" + "---|" * len(kinds)]
        for reason in reasons:
            lines.append(f"| {reason} | " + " | ".join(str(summary[k]["failures"].get(reason, 0)) for k in kinds) + " |")
        lines.append("")
        for kind in kinds:
            s = summary[kind]
            lines.append(
                f"{SEGMENTER_LABELS[kind]}: the loop reported success on {_pct(s['loop_reported_success'])}; "
                f"{s['loop_success_rejected_by_truth']} self-reported successes failed ground truth, "
                f"{s['loop_failure_but_truth_success']} reported failures were in fact good images. "
                f"Injected twin error at the target {_num(s['prior_centroid_error_mm'], 1)} mm "
                f"(uncorrected box precision {_num(s['prior_box_precision'])} / recall {_num(s['prior_box_recall'])}); "
                f"target mostly in the first image for {_pct(s['start_visible'])} of the requests.")
        return "\n".join(lines)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "config": asdict(self.config), "planner": self.planner.to_dict(),
            "anchors": {"ipcai_2025": IPCAI_2025, "goals": GOALS},
            "summary": self.summary(), "table": self.table(),
            "requests": [asdict(r) for r in self.requests],
            "records": [asdict(r) for r in self.records],
        }
        path.write_text(json.dumps(payload, indent=1, default=_json_default, allow_nan=True))
        return path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
