"""`fluorosam generate`: the FluoroSeg-style data engine.

Work is split into shards; shard i is a pure function of (seed, i), so runs resume after an
interruption (finished shards are skipped) and scale out with `--shard-index/--num-shards`
(a Slurm array or a Kubernetes Job), with no coordination beyond the shared output folder:

    sbatch --array=0-31 --wrap "fluorosam generate --out /data/fluoroseg --images 100000 \\
        --shard-index \\$SLURM_ARRAY_TASK_ID --num-shards 32"
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..geometry.carm import CArmGeometry, CArmState
from ..geometry.collimation import Collimation
from ..language.vocabulary import Vocabulary
from ..serialization import to_jsonable
from ..twin.config import TwinConfig
from ..twin.patient import Patient
from ..twin.renderer import CpuRenderer
from .anatomy import PatientAnatomy
from .deform import DeformationConfig, deform_patient
from .groundtruth import CoverageRule, MaskSet, group_masks, merge, structure_masks
from .shards import SHARD_PATTERN, Sample, ShardWriter
from .text import PromptGenerator, absent_targets, held_out_summary
from .tools import ToolCatalog, add_tools_to_render, place_tool, tool_prompts
from .views import ViewSampler, ViewSamplerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorConfig:
    out_dir: str = "output/fluoroseg"
    patients_dir: str = ""               # folder of patient folders, or one patient folder; "" = default
    images: int = 2000
    image_size_px: int = 256
    shard_size: int = 100
    workers: int = 2
    seed: int = 0
    shard_index: int = 0                 # this machine's part of the shards ...
    num_shards: int = 1                  # ... out of this many parts
    standard_view_fraction: float = 0.5
    collimation_probability: float = 0.3
    iris_probability: float = 0.3
    tool_probability: float = 0.4
    max_tools: int = 3
    deformation_probability: float = 0.5  # per shard: the shard's patient is a deformed variant
    max_prompts: int = 30
    negatives_per_image: int = 3
    val_patient_fraction: float = 0.2     # with several patients, the split is by patient
    views: ViewSamplerConfig = field(default_factory=ViewSamplerConfig)
    deformation: DeformationConfig = field(default_factory=DeformationConfig)


def shard_indices(config: GeneratorConfig) -> list[int]:
    total = math.ceil(config.images / config.shard_size)
    return [i for i in range(total) if i % config.num_shards == config.shard_index]


def list_patients(patients_dir: str) -> list[Path | None]:
    """Patient folders (each with ct.nii.gz); [None] means the default patient."""
    if not patients_dir:
        return [None]
    folder = Path(patients_dir)
    if (folder / "ct.nii.gz").is_file():
        return [folder]
    found = sorted(p for p in folder.iterdir() if (p / "ct.nii.gz").is_file())
    if not found:
        raise FileNotFoundError(f"no patient folders with ct.nii.gz under {folder}")
    return found


def patient_split(patient_id: str, fraction: float, n_patients: int) -> str | None:
    """Split by patient when there are several; None leaves the split to the view rules."""
    if n_patients < 2:
        return None
    bucket = int(hashlib.sha256(patient_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if bucket < fraction else "train"


class ImageFactory:
    """Renders one image with its masks, prompts and metadata."""

    def __init__(self, patient: Patient, config: GeneratorConfig, forced_split: str | None = None) -> None:
        self.patient = patient
        self.config = config
        self.forced_split = forced_split
        self.renderer = CpuRenderer(patient)
        self.anatomy = PatientAnatomy(patient)
        self.views = ViewSampler(self.anatomy, replace(config.views, image_size_px=config.image_size_px))
        self.vocabulary = Vocabulary.load()
        self.groups = {g.name: self.vocabulary.group_members(g.name) for g in self.vocabulary.groups()}
        self.prompts = PromptGenerator(self.vocabulary)
        self.tools = ToolCatalog()
        self.rule = CoverageRule()

    def make(self, rng: np.random.Generator, key: str) -> Sample:
        timings = {}
        started = time.perf_counter()
        standard = rng.random() < self.config.standard_view_fraction
        view = self.views.standard(rng) if standard else self.views.random(rng)
        collimation = self._collimation(rng)
        state = CArmState(view.config, view.pose, collimation)
        timings["view_s"] = time.perf_counter() - started
        started = time.perf_counter()
        result = self.renderer.render(state, structures="all")
        timings["render_s"] = time.perf_counter() - started
        started = time.perf_counter()
        masks = merge(structure_masks(result.path_length_mm, result.structure_names, self.rule),
                      group_masks(result.path_length_mm, result.structure_names, self.groups, self.rule))
        beam = CArmGeometry(view.config).principal_ray_world(view.pose)
        line_integral, masks, tools = self._add_tools(rng, result, masks, view.target_world, beam)
        timings["masks_tools_s"] = time.perf_counter() - started
        started = time.perf_counter()
        split = self.forced_split or view.split
        visible = {n for n, p in zip(result.structure_names, result.path_length_mm) if p.any()}
        meta = self._meta(rng, view, state, result, masks, tools, split, visible)
        timings["text_s"] = time.perf_counter() - started
        meta["timings"] = timings
        return Sample(key, meta, line_integral, result.exposed, masks.masks)

    def _collimation(self, rng: np.random.Generator) -> Collimation:
        size = self.config.image_size_px
        if rng.random() >= self.config.collimation_probability:
            return Collimation.open()
        width, height = rng.uniform(0.4, 1.0, size=2) * size
        centre = size / 2 + rng.uniform(-0.15, 0.15, size=2) * size
        collimation = Collimation.centered(width, height, size, size, centre[0], centre[1]).clipped(size, size)
        if rng.random() < self.config.iris_probability:
            collimation = collimation.with_iris(rng.uniform(0.45, 0.7) * size, size / 2, size / 2)
        return collimation

    def _add_tools(self, rng, result, masks: MaskSet, target_world: np.ndarray, beam_world: np.ndarray):
        if rng.random() >= self.config.tool_probability:
            return result.line_integral, masks, []
        count = int(rng.integers(1, self.config.max_tools + 1))
        placed = [place_tool(self.tools.sample_variant(rng), rng, target_world, beam_direction_world=beam_world)
                  for _ in range(count)]
        line_integral, tool_masks, descriptions = add_tools_to_render(
            result, placed, self.renderer.effective_energy_kev)
        kept = [i for i, m in enumerate(tool_masks) if self.rule.keeps(m)]
        tools = [{"family": placed[i].variant.family, "variant": placed[i].variant.name,
                  "description": descriptions[i]} for i in kept]
        tool_set = MaskSet([f"tool_{placed[i].variant.family}_{n}" for n, i in enumerate(kept)], ["tool"] * len(kept),
                           tool_masks[kept] if kept else np.zeros((0, *result.exposed.shape), dtype=bool))
        return line_integral, merge(masks, tool_set), tools

    def _meta(self, rng, view, state, result, masks: MaskSet, tools, split, visible) -> dict:
        prompt_split = "train" if split == "train" else "eval"
        mask_records, tool_iter = [], iter(tools)
        for name, kind, mask in zip(masks.names, masks.kinds, masks.masks):
            record = {"name": name, "kind": kind, "coverage": float(mask.mean())}
            if kind == "tool":
                tool = next(tool_iter)
                record.update(tool)
                record["canonical"] = tool["description"]
                record["prompts"] = [{"text": t, "template_id": "tool", "comprehensive": False}
                                     for t in self._tool_prompts(tool)]
            else:
                record["canonical"] = self.prompts.canonical(name)
                record["prompts"] = [_prompt_dict(p) for p in
                                     self.prompts.prompts(name, rng, max_prompts=self.config.max_prompts,
                                                          split=prompt_split)]
            mask_records.append(record)
        absent = absent_targets(self.vocabulary, visible)
        negatives = [_prompt_dict(p) for p in self.prompts.negative_prompts(absent, rng, self.config.negatives_per_image)]
        camera = result.camera
        return {
            "patient_id": self.patient.patient_id, "split": split, "view_family": view.family,
            "primary": view.primary, "alpha_deg": view.pose.alpha_deg, "beta_deg": view.pose.beta_deg,
            "isocenter_mm": list(view.pose.isocenter_mm), "angle_error_deg": view.angle_error_deg,
            "source_to_detector_distance_mm": state.config.source_to_detector_distance_mm,
            "source_to_isocenter_distance_mm": state.config.source_to_isocenter_distance_mm,
            "pixel_size_mm": state.config.pixel_size_mm, "mirror_columns": state.config.mirror_columns,
            "index_from_world": camera.index_from_world.tolist(), "collimation": asdict(state.collimation),
            "masks": mask_records, "negatives": negatives,
            # every structure with any path length in the image, kept or not: never a negative
            "visible_structures": sorted(visible),
        }

    def _tool_prompts(self, tool: dict) -> list[str]:
        variant = self.tools.variant(tool["variant"])
        texts = [tool["description"], *tool_prompts(variant)]
        return list(dict.fromkeys(texts))[: self.config.max_prompts]


def _prompt_dict(prompt) -> dict:
    """A prompt for the shard; `units` lists the acceptable masks (any one unit, as a union of
    the named classes) for a non-comprehensive prompt, or the single all-members unit."""
    return {"text": prompt.text, "target": prompt.target, "template_id": prompt.template_id,
            "comprehensive": prompt.comprehensive, "negative": prompt.negative, "split": prompt.split,
            "units": [list(unit) for unit in prompt.units]}


# ---- shards and workers --------------------------------------------------------------------

def _load_patient(folder: Path | None) -> Patient:
    return TwinConfig(patient_dir=str(folder) if folder else "").load_patient()


def generate_shard(config: GeneratorConfig, index: int, patients: list[Path | None]) -> dict:
    """Write shard `index` (deterministic in (seed, index)); returns its counts."""
    out = Path(config.out_dir)
    done_marker = out / (SHARD_PATTERN.format(index=index) + ".done.json")
    if done_marker.is_file():
        return json.loads(done_marker.read_text())
    rng = np.random.default_rng([config.seed, index])
    folder = patients[int(rng.integers(len(patients)))]
    patient = _load_patient(folder)
    forced = patient_split(patient.patient_id, config.val_patient_fraction, len(patients))
    if rng.random() < config.deformation_probability:
        patient = deform_patient(patient, rng, config.deformation, variant_id=f"s{config.seed}i{index}")
    factory = ImageFactory(patient, config, forced)
    first = index * config.shard_size
    count = min(config.shard_size, config.images - first)
    writers = {split: ShardWriter(out / split / SHARD_PATTERN.format(index=index)) for split in ("train", "val")}
    stats: Counter = Counter()
    try:
        for offset in range(count):
            sample = factory.make(rng, f"{index:06d}_{offset:04d}")
            writers[sample.meta["split"]].write(sample)
            _count(stats, sample.meta)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    summary = {"shard": index, "images": count, "patient_id": patient.patient_id, "counts": dict(stats)}
    done_marker.write_text(json.dumps(summary))
    return summary


def _count(stats: Counter, meta: dict) -> None:
    stats[f"split/{meta['split']}"] += 1
    stats[f"view/{meta['view_family']}"] += 1
    for record in meta["masks"]:
        stats[f"{record['kind']}/{record.get('family', record['name']) if record['kind'] == 'tool' else record['name']}"] += 1
    stats["negatives"] += len(meta["negatives"])
    for name, seconds in meta["timings"].items():
        stats[f"seconds/{name}"] += seconds


def _worker(arguments):
    config, index, patients = arguments
    logging.basicConfig(level=logging.WARNING)
    if config.workers > 1:  # one numba thread per worker process: no oversubscription of the cores
        import numba

        numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS // config.workers))
    return generate_shard(config, index, patients)


def generate(config: GeneratorConfig, progress: bool = True) -> dict:
    """Generate this machine's shards with `config.workers` processes; write the data card."""
    from tqdm import tqdm

    patients = list_patients(config.patients_dir)
    indices = shard_indices(config)
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summaries = []
    jobs = [(config, index, patients) for index in indices]
    bar = tqdm(total=sum(min(config.shard_size, config.images - i * config.shard_size) for i in indices),
               unit="img", desc="generating", disable=not progress)
    if config.workers <= 1:
        results = map(_worker, jobs)
    else:
        pool = multiprocessing.get_context("spawn").Pool(config.workers)
        results = pool.imap_unordered(_worker, jobs)
    for summary in results:
        summaries.append(summary)
        bar.update(summary["images"])
    bar.close()
    if config.workers > 1:
        pool.close()
        pool.join()
    elapsed = time.perf_counter() - started
    card = write_data_card(config, out, elapsed)
    return card


def write_data_card(config: GeneratorConfig, out: Path, elapsed_s: float | None = None) -> dict:
    """Counts per structure, group, tool, view family and split, from every finished shard."""
    totals: Counter = Counter()
    shards, patients = 0, set()
    for marker in sorted(out.glob("shard-*.tar.done.json")):
        summary = json.loads(marker.read_text())
        totals.update(summary["counts"])
        patients.add(summary["patient_id"])
        shards += 1

    def section(prefix: str) -> dict:
        return dict(sorted(((k.split("/", 1)[1], v) for k, v in totals.items() if k.startswith(prefix + "/")),
                           key=lambda kv: -kv[1]))

    card = {
        "generator": "fluorosam_ros.data.generate", "config": to_jsonable(asdict(config)),
        "shards_finished": shards, "patients": sorted(patients),
        "images_per_split": section("split"), "view_families": section("view"),
        "structures": section("structure"), "groups": section("group"), "tools": section("tool"),
        "negative_prompts": totals.get("negatives", 0),
        "seconds_per_image_by_stage": {k: v / max(sum(section("split").values()), 1)
                                       for k, v in section("seconds").items()},
        "held_out": {
            "view_families": list(config.views.held_out_families),
            "oblique_band_deg": list(config.views.held_out_oblique_band_deg),
            "rule": "with one patient, images of the held-out view families and views whose LAO/RAO angle "
                    "lies in the band go to 'val'; with several patients the split is by patient",
            "phrasings": held_out_summary(),
        },
        "wall_time_s": elapsed_s,
    }
    (out / "data_card.json").write_text(json.dumps(card, indent=2))
    (out / "DATA_CARD.md").write_text(_card_markdown(card))
    return card


def _card_markdown(card: dict) -> str:
    lines = ["# FluoroSeg data card (generated)", "",
             f"- shards finished: {card['shards_finished']}; patients: {', '.join(card['patients'])}",
             f"- images per split: {card['images_per_split']}",
             f"- negative prompts: {card['negative_prompts']}",
             f"- held out: {json.dumps(card['held_out'], indent=None)}", "", "## View families", ""]
    lines += [f"| {k} | {v} |" for k, v in card["view_families"].items()]
    for title in ("structures", "groups", "tools"):
        lines += ["", f"## Masks: {title}", "", "| name | images |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in card[title].items()]
    return "\n".join(lines) + "\n"
