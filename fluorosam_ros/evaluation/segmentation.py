"""`fluorosam evaluate`: FluoroSAM on held-out FluoroSeg images, beside the paper and LiteMedSAM.

Protocol, per validation image (held-out view families and oblique band, held-out phrasings):
- up to `prompts_per_image` stored masks (structures, groups, tools) of at least `min_target_px`
  pixels, drawn with a seed derived from the image key;
- **text only**: the mask's canonical name ("left upper lobe of the lung"); the output with the
  highest predicted IoU is scored;
- **text + N points**: SAM's interactive protocol. Each click goes deep into the larger error
  region of the previous prediction (positive for a miss, negative for a spill), and every
  earlier click is kept; scored after 2 and after 8 clicks;
- **paraphrase**: one held-out phrasing of the same mask, text only, against the canonical name;
- **absent**: every negative prompt of the image (a structure that is not in it) should be
  refused (absent score >= threshold); a present canonical prompt that is refused is counted
  as wrongly refused, and scored as an empty mask;
- **LiteMedSAM peer**: a box from the ground-truth mask, and a box spanned by 2 points at the
  two ends of the target along its principal axis (what a user clicking its ends gives).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..data.shards import Sample
from ..train.prompts import next_point
from ..twin.detector import DetectorModel
from .metrics import MaskScores, score

log = logging.getLogger(__name__)

# FluoroSAM (arXiv 2403.08059), synthetic validation Dice.
PAPER_SYNTHETIC_DICE = {"text": 0.59, "text+2pt": 0.70, "text+8pt": 0.79}
GOAL_DICE = {"text": 0.60, "text+2pt": 0.72, "text+8pt": 0.80}
MODE_LABELS = {
    "text": "FluoroSAM (ours), text only",
    "text+2pt": "FluoroSAM (ours), text + 2 points",
    "text+8pt": "FluoroSAM (ours), text + 8 points",
    "peer_gt_box": "LiteMedSAM, ground-truth box",
    "peer_2pt_box": "LiteMedSAM, box from 2 points",
}


@dataclass
class SegmentationEvalConfig:
    prompts_per_image: int = 3
    point_counts: tuple[int, ...] = (2, 8)
    min_target_px: int = 50
    seed: int = 0


@dataclass
class PromptResult:
    image_key: str
    view_family: str
    mask_name: str
    kind: str
    target_px: int
    text: str
    paraphrase: str | None
    absent_score: float
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class SegmentationReport:
    config: SegmentationEvalConfig
    absent_threshold: float
    prompts: list[PromptResult] = field(default_factory=list)
    negative_absent_scores: list[float] = field(default_factory=list)
    images: int = 0

    # ---- summaries -----------------------------------------------------------------------
    def mode_means(self, prompts: list[PromptResult] | None = None) -> dict[str, dict[str, float]]:
        grouped: dict[str, list[dict[str, float]]] = defaultdict(list)
        for result in self.prompts if prompts is None else prompts:
            for mode, values in result.scores.items():
                grouped[mode].append(values)
        return {mode: {metric: float(np.mean([v[metric] for v in values])) for metric in values[0]}
                | {"n": len(values)} for mode, values in grouped.items()}

    def absent_rates(self) -> dict[str, float]:
        negatives = np.asarray(self.negative_absent_scores)
        present = np.asarray([p.absent_score for p in self.prompts])
        return {
            "absent_correctly_refused": float((negatives >= self.absent_threshold).mean()) if len(negatives) else float("nan"),
            "present_wrongly_refused": float((present >= self.absent_threshold).mean()) if len(present) else float("nan"),
            "negatives": int(len(negatives)), "present": int(len(present)),
        }

    def paraphrase_dice(self) -> dict[str, float]:
        pairs = [(p.scores["text"]["dice"], p.scores["paraphrase"]["dice"]) for p in self.prompts
                 if "paraphrase" in p.scores]
        if not pairs:
            return {"n": 0}
        canonical, paraphrase = np.asarray(pairs).T
        summary = {"canonical": float(canonical.mean()), "paraphrase": float(paraphrase.mean()), "n": len(pairs)}
        read = [p.scores["paraphrase_read"]["dice"] for p in self.prompts if "paraphrase_read" in p.scores]
        if len(read) == len(pairs):
            summary["paraphrase_read"] = float(np.mean(read))
        return summary

    def by_group(self, key: str) -> dict[str, dict[str, float]]:
        groups: dict[str, list[PromptResult]] = defaultdict(list)
        for result in self.prompts:
            groups[getattr(result, key)].append(result)
        return {name: {"text_dice": float(np.mean([r.scores["text"]["dice"] for r in members])), "n": len(members)}
                for name, members in sorted(groups.items())}

    def summary(self) -> dict:
        return {"images": self.images, "prompts": len(self.prompts), "modes": self.mode_means(),
                "absent": self.absent_rates(), "paraphrase": self.paraphrase_dice(),
                "by_view_family": self.by_group("view_family"), "by_kind": self.by_group("kind"),
                "paper_synthetic_dice": PAPER_SYNTHETIC_DICE, "goal_dice": GOAL_DICE}

    def table(self) -> str:
        """The evaluation as a Markdown table (printed, and pasted into the model card)."""
        means = self.mode_means()
        lines = ["| method, prompt | IoU | Dice | HD95 (px) | paper Dice | goal Dice | n |",
                 "|---|---|---|---|---|---|---|"]
        for mode, label in MODE_LABELS.items():
            if mode not in means:
                continue
            m = means[mode]
            paper = PAPER_SYNTHETIC_DICE.get(mode)
            goal = GOAL_DICE.get(mode)
            lines.append(f"| {label} | {m['iou']:.3f} | {m['dice']:.3f} | {m['hd95_px']:.1f} | "
                         f"{'' if paper is None else f'{paper:.2f}'} | {'' if goal is None else f'{goal:.2f}'} | {m['n']} |")
        absent, paraphrase = self.absent_rates(), self.paraphrase_dice()
        lines += ["", f"Absent prompts correctly refused: {absent['absent_correctly_refused']:.1%} of "
                      f"{absent['negatives']}; present prompts wrongly refused: "
                      f"{absent['present_wrongly_refused']:.1%} of {absent['present']}."]
        if paraphrase["n"]:
            lines.append(f"Held-out phrasings, text only: Dice {paraphrase['paraphrase']:.3f} against "
                         f"{paraphrase['canonical']:.3f} for the canonical names (n = {paraphrase['n']}).")
            if "paraphrase_read" in paraphrase:
                lines.append(f"The same phrasings read by the prompt reader first (the vocabulary knows the "
                             f"lay terms held out from the model): Dice {paraphrase['paraphrase_read']:.3f}.")
        families = self.by_group("view_family")
        lines.append("Text-only Dice by view family: " + ", ".join(
            f"{name} {values['text_dice']:.3f} (n={values['n']})" for name, values in families.items()) + ".")
        return "\n".join(lines)

    def save(self, path: str | Path) -> Path:
        """Write the report as JSON to `path` (a folder gets `segmentation.json` inside it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "segmentation.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"config": asdict(self.config), "absent_threshold": self.absent_threshold,
                   "summary": self.summary(), "prompts": [asdict(p) for p in self.prompts]}
        path.write_text(json.dumps(payload, indent=1))
        return path


# ---- prompts --------------------------------------------------------------------------------
def _chosen_records(sample: Sample, config: SegmentationEvalConfig) -> list[int]:
    areas = sample.masks.reshape(len(sample.masks), -1).sum(axis=1) if len(sample.masks) else np.zeros(0)
    eligible = [i for i, record in enumerate(sample.meta.get("masks", []))
                if areas[i] >= config.min_target_px and record.get("canonical")]
    rng = np.random.default_rng([config.seed, zlib.crc32(sample.key.encode())])
    count = min(config.prompts_per_image, len(eligible))
    return sorted(rng.choice(eligible, size=count, replace=False).tolist()) if count else []


def _held_out_phrasing(record: dict, rng: np.random.Generator) -> str | None:
    texts = [p["text"] for p in record.get("prompts", [])
             if p.get("split") == "eval" and p.get("comprehensive", True) and p.get("text")]
    return texts[int(rng.integers(len(texts)))] if texts else None


def end_points_box(target: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) spanned by the target's two extreme pixels along its principal axis."""
    rows, cols = np.nonzero(target)
    points = np.stack([cols, rows], axis=1).astype(np.float64)
    centred = points - points.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0] if len(points) > 1 else np.array([1.0, 0.0])
    projection = centred @ axis
    ends = points[[int(projection.argmin()), int(projection.argmax())]]
    return np.concatenate([ends.min(axis=0), ends.max(axis=0) + 1.0])


def ground_truth_box(target: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(target)
    return np.array([cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0])


# ---- the evaluation -------------------------------------------------------------------------
class SegmentationEvaluator:
    def __init__(self, predictor, config: SegmentationEvalConfig | None = None, peer=None,
                 prompt_reader=None) -> None:
        """`prompt_reader` (`language.prompt_reader.PromptReader`): also score each held-out
        phrasing as the reader passes it on (the predictor itself reads prompts as written)."""
        self.predictor = predictor
        self.prompt_reader = prompt_reader
        self.config = config or SegmentationEvalConfig()
        self.peer = peer
        self.detector = DetectorModel()
        self.report = SegmentationReport(self.config, predictor.absent_threshold)

    def run(self, samples: Iterable[Sample], total: int | None = None, progress: bool = True) -> SegmentationReport:
        from tqdm import tqdm

        for sample in tqdm(samples, total=total, desc="evaluating", unit="image", disable=not progress):
            self.evaluate_sample(sample)
        return self.report

    def evaluate_sample(self, sample: Sample) -> None:
        # Both models see what the detector shows (and what training saw before augmentation):
        # the windowed neg-log display image, noise-free.
        display = self.detector.display(self.detector.intensity(sample.image, sample.exposed), sample.exposed)
        self.predictor.set_image(display, sample.exposed)
        if self.peer is not None:
            self.peer.set_image(display)
        rng = np.random.default_rng([self.config.seed, zlib.crc32(sample.key.encode()), 1])
        for negative in sample.meta.get("negatives", []):
            self.report.negative_absent_scores.append(self.predictor.predict(text=negative["text"]).absent_score)
        for index in _chosen_records(sample, self.config):
            self.report.prompts.append(self._evaluate_prompt(sample, index, rng))
        self.report.images += 1

    def _scored(self, prediction, target: np.ndarray) -> MaskScores:
        mask = np.zeros_like(target) if prediction.absent else prediction.best_mask
        return score(mask, target)

    def _evaluate_prompt(self, sample: Sample, index: int, rng: np.random.Generator) -> PromptResult:
        record, target = sample.meta["masks"][index], sample.masks[index]
        text = record["canonical"]
        first = self.predictor.predict(text=text)
        result = PromptResult(sample.key, sample.meta.get("view_family", ""), record["name"], record.get("kind", ""),
                              int(target.sum()), text, _held_out_phrasing(record, rng), first.absent_score)
        result.scores["text"] = self._scored(first, target).as_dict()
        self._click_rounds(text, first, target, rng, result)
        if result.paraphrase:
            result.scores["paraphrase"] = self._scored(self.predictor.predict(text=result.paraphrase), target).as_dict()
            if self.prompt_reader is not None:
                read = self.prompt_reader(result.paraphrase) or result.paraphrase
                # text the reader leaves as written was scored just above
                result.scores["paraphrase_read"] = result.scores["paraphrase"] if read == result.paraphrase else \
                    self._scored(self.predictor.predict(text=read), target).as_dict()
        if self.peer is not None:
            result.scores["peer_gt_box"] = score(self.peer.predict_box(ground_truth_box(target)), target).as_dict()
            result.scores["peer_2pt_box"] = score(self.peer.predict_box(end_points_box(target)), target).as_dict()
        return result

    def _click_rounds(self, text: str, prediction, target: np.ndarray, rng: np.random.Generator,
                      result: PromptResult) -> None:
        points, labels = np.zeros((0, 2)), np.zeros(0, dtype=int)
        wanted = set(self.config.point_counts)
        for count in range(1, max(wanted, default=0) + 1):
            # Clicks correct what the user sees: the best mask, even when flagged absent.
            click = next_point(prediction.best_mask, target, rng)
            if click is not None:
                points, labels = np.vstack([points, click[0][None]]), np.append(labels, click[1])
                # as in SAM's interactive use, the answer being corrected goes back in as the mask prompt
                previous = prediction.low_res_logits[0] if self.predictor.takes_mask_input else None
                prediction = self.predictor.predict(text=text, points=points, labels=labels, mask_input=previous)
            if count in wanted:
                # With points the user has asserted the structure is there: score the mask.
                result.scores[f"text+{count}pt"] = score(prediction.best_mask, target).as_dict()


def validation_samples(data_dir: str | Path, split: str = "val", max_images: int | None = None, skip: int = 0):
    """(iterator over the split's samples after the first `skip`, how many there will be)."""
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")
    from ..data.shards import iterate_samples, shard_paths

    paths = shard_paths(Path(data_dir), split)
    if not paths:
        raise FileNotFoundError(f"no '{split}' shards in {data_dir}; make them with `fluorosam generate`")
    card = Path(data_dir) / "data_card.json"
    total = json.loads(card.read_text()).get("images_per_split", {}).get(split) if card.is_file() else None
    if total is not None:
        total = max(total - skip, 0)
    if max_images is not None:
        total = min(total, max_images) if total is not None else max_images

    def limited():
        for count, sample in enumerate(iterate_samples(paths)):
            if count < skip:
                continue
            if max_images is not None and count - skip >= max_images:
                return
            yield sample

    return limited(), total
