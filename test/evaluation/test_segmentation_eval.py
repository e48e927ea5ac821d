"""The evaluation protocol with stand-in predictors (isolation: the real model is evaluated by
`fluorosam evaluate` and by test/model/test_bundled_checkpoint.py)."""

import json

import numpy as np

from fluorosam_ros.data.shards import Sample
from fluorosam_ros.evaluation.segmentation import (
    SegmentationEvalConfig, SegmentationEvaluator, end_points_box, ground_truth_box)
from fluorosam_ros.model.predictor import Prediction

SIZE = 64


def _sample(key: str) -> Sample:
    masks = np.zeros((2, SIZE, SIZE), dtype=bool)
    masks[0, 10:30, 10:40] = True
    masks[1, 40:60, 20:30] = True
    records = [
        {"name": "heart", "kind": "structure", "canonical": "heart",
         "prompts": [{"text": "can you locate the heart?", "split": "eval", "comprehensive": True}]},
        {"name": "spine", "kind": "group", "canonical": "spine", "prompts": []},
    ]
    meta = {"masks": records, "view_family": "chest_ap",
            "negatives": [{"text": "left femur"}, {"text": "right femur"}]}
    image = np.random.default_rng(0).random((SIZE, SIZE)).astype(np.float32)
    return Sample(key, meta, image, np.ones((SIZE, SIZE), dtype=bool), masks)


class OraclePredictor:
    """Answers canonical names and phrasings with the right mask; refuses the negatives.
    With points, it returns a disc of radius 6 around each positive click."""

    absent_threshold = 0.5
    takes_mask_input = True

    def __init__(self, sample: Sample, refuse_everything: bool = False) -> None:
        self.by_text = {}
        for record, mask in zip(sample.meta["masks"], sample.masks):
            self.by_text[record["canonical"]] = mask
            for prompt in record["prompts"]:
                self.by_text[prompt["text"]] = mask
        self.refuse_everything = refuse_everything
        self.calls = []
        self.mask_inputs = []

    def set_image(self, image, valid=None):
        pass

    def predict(self, text=None, points=None, labels=None, mask_input=None):
        self.calls.append((text, None if points is None else len(points)))
        self.mask_inputs.append(mask_input)
        if points is not None:
            rows, cols = np.ogrid[:SIZE, :SIZE]
            mask = np.zeros((SIZE, SIZE), dtype=bool)
            for (x, y), label in zip(points, labels):
                if label == 1:
                    mask |= (rows - y) ** 2 + (cols - x) ** 2 <= 36
            absent = 0.0
        else:
            known = text in self.by_text and not self.refuse_everything
            mask = self.by_text[text] if known else np.zeros((SIZE, SIZE), dtype=bool)
            absent = 0.0 if known else 1.0
        masks = np.stack([mask] * 3)
        # low-res logits that name the call, to see which answer comes back as the mask prompt
        return Prediction(masks, np.ones(3), absent, np.full((3, 16, 16), float(len(self.calls))), self.absent_threshold)


def test_oracle_scores_perfectly_and_refuses_the_negatives(tmp_path):
    sample = _sample("a")
    evaluator = SegmentationEvaluator(OraclePredictor(sample), SegmentationEvalConfig(prompts_per_image=2))
    report = evaluator.run([sample], progress=False)
    means = report.mode_means()
    assert means["text"]["dice"] == 1.0 and means["text"]["hd95_px"] == 0.0 and means["text"]["n"] == 2
    assert report.absent_rates()["absent_correctly_refused"] == 1.0
    assert report.absent_rates()["present_wrongly_refused"] == 0.0
    assert report.paraphrase_dice() == {"canonical": 1.0, "paraphrase": 1.0, "n": 1}
    saved = json.loads(report.save(tmp_path / "eval.json").read_text())
    assert saved["summary"]["prompts"] == 2 and "text+8pt" in saved["summary"]["modes"]
    assert report.save(tmp_path) == tmp_path / "segmentation.json"  # a folder: the report goes inside
    assert "paper Dice" in report.table() and "0.59" in report.table()


def test_clicks_go_into_the_error_and_accumulate():
    sample = _sample("b")
    predictor = OraclePredictor(sample, refuse_everything=True)
    report = SegmentationEvaluator(predictor, SegmentationEvalConfig(prompts_per_image=1)).run([sample], progress=False)
    result = report.prompts[0]
    # refused text prompts count as empty masks, and as wrongly refused
    assert result.scores["text"]["dice"] == 0.0 and report.absent_rates()["present_wrongly_refused"] == 1.0
    # each round adds one click: the decoder saw 1..8 points
    assert [n for _, n in predictor.calls if n is not None] == list(range(1, 9))
    # ... and got the answer it corrects (the previous call's best low-res logits) as its mask prompt
    clicked = [i for i, (_, n) in enumerate(predictor.calls) if n is not None]
    assert all(predictor.mask_inputs[i] is not None and (predictor.mask_inputs[i] == i).all() for i in clicked)
    # positive clicks into the missed structure make the disc mask overlap it more and more
    assert 0 < result.scores["text+2pt"]["dice"] < result.scores["text+8pt"]["dice"]


def test_boxes_from_a_mask():
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:8, 2:25] = True
    assert ground_truth_box(mask).tolist() == [2, 5, 25, 8]
    x0, y0, x1, y1 = end_points_box(mask)
    assert x0 == 2 and x1 == 25 and 5 <= y0 <= y1 <= 8


def test_validation_samples_skip_and_limit(tmp_path):
    """`--skip` picks checkpoints on images the reported evaluation (the first N) never sees."""
    from fluorosam_ros.data.shards import ShardWriter
    from fluorosam_ros.evaluation.segmentation import validation_samples

    writer = ShardWriter(tmp_path / "val" / "shard-000000.tar")
    for index in range(5):
        writer.write(_sample(f"img{index}"))
    writer.close()
    (tmp_path / "data_card.json").write_text(json.dumps({"images_per_split": {"val": 5}}))
    samples, total = validation_samples(tmp_path, "val", max_images=2, skip=2)
    assert [s.key for s in samples] == ["img2", "img3"] and total == 2
    samples, total = validation_samples(tmp_path, "val", skip=3)
    assert [s.key for s in samples] == ["img3", "img4"] and total == 2
    first, _ = validation_samples(tmp_path, "val", max_images=2)
    assert [s.key for s in first] == ["img0", "img1"]
