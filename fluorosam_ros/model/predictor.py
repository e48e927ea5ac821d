"""FluoroSAMPredictor: `set_image()` once (the embedding is cached), then `predict()` per prompt.

    predictor = FluoroSAMPredictor(build_model("fluorosam_cpu_small", "weights/..."))
    predictor.set_image(image)                       # (H, W) X-ray, any dtype
    result = predictor.predict(text="left lung")     # masks at the image's resolution
    if result.absent: ...                            # the model says it is not in the image
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from .fluorosam import FluoroSAM

MAX_PROMPT_CHARS = 500
MAX_POINTS = 64


class PromptError(ValueError):
    """A prompt the predictor refuses, with the reason."""


@dataclass
class Prediction:
    masks: np.ndarray          # (K, H, W) bool at the original resolution, best first
    iou_scores: np.ndarray     # (K,) predicted IoU, same order
    absent_score: float        # probability that the prompted structure is not in the image
    low_res_logits: np.ndarray  # (K, S/4, S/4), for iterative refinement
    absent_threshold: float = 0.5
    text_prompted: bool = True   # "absent" answers a text prompt; clicks say the structure is there
    from_grounding: bool = False  # the best mask is the coarse text grounding map (text-only prompts)
    prompt_text: str = ""         # the text the model was given (after the prompt reader, if any)

    @property
    def absent(self) -> bool:
        return self.text_prompted and self.absent_score >= self.absent_threshold

    @property
    def best_mask(self) -> np.ndarray:
        return self.masks[0]


class FluoroSAMPredictor:
    def __init__(self, model: FluoroSAM, absent_threshold: float = 0.5, text_only_from_grounding: bool = True,
                 text_map_threshold_logit: float = 0.0,
                 prompt_reader: Callable[[str], str | None] | None = None) -> None:
        """`text_only_from_grounding`: a text-only prompt's best mask is the text grounding map
        where the model has one and it is not empty (at S/4 from the grounding refiner where the
        model has one, else the coarse 16x16 map, upsampled); the decoder's own text-only mask
        scored lower on held-out views (it tends to return nothing where it is unsure), and it is
        kept as the next mask. With clicks the decoder always answers.

        `text_map_threshold_logit`: where that map becomes the mask. The map under-segments a
        little: over every structure of validation images 60-89 its Dice was 0.367 at 0, 0.387
        at -1, 0.345 at +0.5. But clicks then correct a larger answer: on `fluorosam evaluate
        --images 60` -1 gave text only 0.396 (0.370 at 0) and 2 points 0.505 (0.547), so the
        default stays 0; lower it where answers are read, not clicked on.

        `prompt_reader`: text -> the text the model is given, or None to give it the text as
        written (`language.prompt_reader.PromptReader`: the canonical name of the structure a
        sentence names). `Prediction.prompt_text` says which text the model saw."""
        if not math.isfinite(text_map_threshold_logit):
            raise ValueError(f"text_map_threshold_logit must be finite, got {text_map_threshold_logit}")
        self.model = model.eval()
        self.absent_threshold = absent_threshold
        self.text_only_from_grounding = text_only_from_grounding
        self.text_map_threshold_logit = float(text_map_threshold_logit)
        self.prompt_reader = prompt_reader
        self.device = next(model.parameters()).device
        self._embedding: torch.Tensor | None = None
        self._grounding_embedding: torch.Tensor | None = None  # the text grounding's (a grounding encoder's)
        self._pixel_features: torch.Tensor | None = None  # the grounding refiner's, per image
        self._original_size: tuple[int, int] | None = None
        self._input_size: tuple[int, int] | None = None

    @property
    def takes_mask_input(self) -> bool:
        """Whether `predict(mask_input=...)` is accepted (the model has mask prompts)."""
        return self.model.takes_mask_prompts

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @torch.no_grad()
    def set_image(self, image: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Compute and cache the image embedding. `valid` marks exposed pixels (collimation)."""
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[-1] in (3, 4):
            image = image[..., :3].mean(axis=-1)
        if image.ndim != 2 or min(image.shape) < 8:
            raise ValueError(f"expected a 2-D image of at least 8x8 pixels, got shape {image.shape}")
        if not np.issubdtype(image.dtype, np.number) or not np.all(np.isfinite(image)):
            raise ValueError("image must be numeric and finite (no NaN or inf)")
        if valid is not None and np.asarray(valid).shape != image.shape:
            raise ValueError(f"valid mask shape {np.asarray(valid).shape} != image shape {image.shape}")
        tensor, input_size = self.model.preprocessor(image.astype(np.float32), valid)
        features = self.model.embed_for_prompts(tensor.to(self.device))
        self._embedding, self._grounding_embedding = features.embedding, features.grounding_embedding
        self._pixel_features = features.pixel_features
        self._original_size = image.shape
        self._input_size = tuple(input_size)

    def reset_image(self) -> None:
        self._embedding = self._grounding_embedding = self._pixel_features = None
        self._original_size = self._input_size = None

    @torch.no_grad()
    def predict(self, text: str | None = None, points: np.ndarray | None = None, labels: np.ndarray | None = None,
                multimask_output: bool = True, mask_input: np.ndarray | None = None) -> Prediction:
        """Masks for a text prompt and/or points (x = column, y = row, original pixels; labels 1/0).

        `mask_input`: an earlier answer's (S/4, S/4) logits (`Prediction.low_res_logits[0]`) to
        refine with new clicks, as in SAM, for a model that takes mask prompts; without it, a
        text prompt's refined grounding map is the mask prompt."""
        if self._embedding is None:
            raise RuntimeError("call set_image() before predict()")
        prompt_text = self._model_text(text)
        text_tokens = None if prompt_text is None else self.model.encode_text(texts=[prompt_text])
        point_inputs = self._points(points, labels)
        if text_tokens is None and point_inputs is None:
            raise PromptError("give a text prompt, points, or both")
        grounding = None if text_tokens is None else self.model.ground_text(self._grounding_embedding, text_tokens)
        refined = None if grounding is None else self.model.refine_grounding(grounding, self._pixel_features,
                                                                             text_tokens)
        output = self.model.decode(self._embedding, point_inputs, None if text_tokens is None else text_tokens.tokens,
                                   multimask_output, grounding_logits=grounding,
                                   mask_logits=self._mask_prompt(mask_input, refined))
        logits = self.model.preprocessor.postprocess_masks(output.masks, self._input_size, self._original_size)[0]
        order = torch.argsort(output.iou_predictions[0], descending=True)
        masks = (logits[order] > 0).cpu().numpy()
        scores = output.iou_predictions[0][order]
        low_res = output.masks[0][order]
        from_grounding = False
        if self.text_only_from_grounding and grounding is not None and point_inputs is None:
            answer = grounding if refined is None else refined
            coarse = (self.model.preprocessor.postprocess_masks(answer[:, None], self._input_size,
                                                                self._original_size)[0, 0]
                      > self.text_map_threshold_logit).cpu().numpy()
            if coarse.any():  # the map takes the decoder's best score (there is no score of its own)
                masks = np.concatenate([coarse[None], masks[:-1]])
                scores = torch.cat([scores[:1], scores[:-1]])
                answer = F.interpolate(answer[:, None], size=low_res.shape[-2:], mode="bilinear", align_corners=False)
                low_res = torch.cat([answer[0], low_res[:-1]])
                from_grounding = True
        return Prediction(masks=masks,
                          iou_scores=scores.cpu().numpy(),
                          absent_score=float(torch.sigmoid(output.absent_logits[0])),
                          low_res_logits=low_res.cpu().numpy(),
                          absent_threshold=self.absent_threshold, text_prompted=text_tokens is not None,
                          from_grounding=from_grounding, prompt_text=prompt_text or "")

    def _mask_prompt(self, mask_input: np.ndarray | None, refined: torch.Tensor | None) -> torch.Tensor | None:
        """The decoder's mask prompt: the caller's, else the refined text map (models that take one)."""
        if mask_input is None:
            return refined if self.model.takes_mask_prompts else None
        if not self.model.takes_mask_prompts:
            raise PromptError("this model takes no mask prompt (mask_input)")
        low = self.model.image_size // 4
        try:
            array = np.asarray(mask_input, dtype=np.float32).reshape(1, low, low)
        except (TypeError, ValueError) as error:
            raise PromptError(f"mask_input must be ({low}, {low}) low-resolution logits, "
                              f"got shape {np.shape(mask_input)}") from error
        if not np.all(np.isfinite(array)):
            raise PromptError("mask_input contains NaN or inf")
        return torch.as_tensor(array, device=self.device)

    def _model_text(self, text: str | None) -> str | None:
        """The validated prompt as the model will see it (after the prompt reader)."""
        if text is None:
            return None
        if not isinstance(text, str):
            raise PromptError(f"text must be a string, got {type(text).__name__}")
        text = text.strip()
        if not text:
            raise PromptError("text prompt is empty")
        if len(text) > MAX_PROMPT_CHARS:
            raise PromptError(f"text prompt has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
        if self.prompt_reader is not None:
            text = self.prompt_reader(text) or text
        return text

    def _points(self, points: np.ndarray | None, labels: np.ndarray | None):
        if points is None and labels is None:
            return None
        if points is None or labels is None:
            raise PromptError("points and labels go together")
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        labels = np.asarray(labels).reshape(-1)
        if len(points) != len(labels) or not 0 < len(points) <= MAX_POINTS:
            raise PromptError(f"need 1..{MAX_POINTS} points with one label each; got {len(points)} and {len(labels)}")
        if not np.all(np.isfinite(points)):
            raise PromptError("points contain NaN or inf")
        height, width = self._original_size
        outside = (points[:, 0] < 0) | (points[:, 0] >= width) | (points[:, 1] < 0) | (points[:, 1] >= height)
        if outside.any():
            raise PromptError(f"points {points[outside].tolist()} lie outside the {width}x{height} image")
        if not np.isin(labels, (0, 1)).all():
            raise PromptError("point labels must be 1 (positive) or 0 (negative)")
        coords = self.model.preprocessor.apply_coords(points.astype(np.float32), self._original_size)
        return (torch.as_tensor(coords, dtype=torch.float32, device=self.device)[None],
                torch.as_tensor(labels, dtype=torch.long, device=self.device)[None])
