"""The FluoroSAM model: image encoder, text prompt path, prompt encoder and mask decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .grounding_refiner import GroundingRefiner
from .mask_decoder import DecoderOutput, MaskDecoder
from .preprocessing import Preprocessor
from .prompt_encoder import PromptEncoder
from .text_encoder import TextPromptEncoder, TextTokens
from .text_grounding import TextGrounding

# Parts a checkpoint from before the dense text grounding lacks; they may start fresh (--init-from).
GROUNDING_PREFIXES = ("text_grounding.", "prompt_encoder.grounding_embed.")
# The grounding's context branch, which a checkpoint from before it lacks (it starts as no correction).
CONTEXT_PREFIXES = ("text_grounding.context.", "text_grounding.context_film.")
# The grounding refiner, which a checkpoint from before it lacks (it starts as no correction).
REFINER_PREFIXES = ("grounding_refiner.",)
# A second image encoder that only the text grounding and its refiner read (optional; see FluoroSAM).
GROUNDING_ENCODER_PREFIXES = ("grounding_encoder.",)
# The mask prompt's downscaling, which a checkpoint from before it lacks (it starts adding nothing).
MASK_INPUT_PREFIXES = ("prompt_encoder.mask_downscaling.",)


@dataclass
class ImageFeatures:
    """One image's features for prompts (`FluoroSAM.embed_for_prompts`)."""

    embedding: torch.Tensor                  # (B, D, S/16, S/16), the mask decoder's
    grounding_embedding: torch.Tensor        # the text grounding's (the same tensor with one encoder)
    pixel_features: torch.Tensor | None      # the grounding refiner's (B, C, S/4, S/4), None without it


class FluoroSAM(nn.Module):
    """Segment-anything structure with a text prompt token (frozen sentence encoder -> MLP -> VQ)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: TextPromptEncoder,
                 prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder, preprocessor: Preprocessor,
                 text_grounding: TextGrounding | None = None,
                 grounding_refiner: GroundingRefiner | None = None,
                 grounding_encoder: nn.Module | None = None) -> None:
        """`grounding_encoder`: an image encoder of its own for the text grounding and its
        refiner, the mask decoder keeping `image_encoder`. Training the encoder for text (the
        trainer's tune_grounding_with_encoder) moves the embedding the decoder was trained on,
        which cost the click prompts; with two encoders each path reads the one it was trained
        with, for a second encoder pass per new image."""
        super().__init__()
        if (text_grounding is None) != (prompt_encoder.grounding_embed is None):
            raise ValueError("text_grounding and a PromptEncoder with dense_text go together")
        if grounding_refiner is not None and (text_grounding is None or not hasattr(image_encoder, "forward_with_skips")):
            raise ValueError("the grounding refiner needs a text grounding and an image encoder with skip features")
        if grounding_encoder is not None and text_grounding is None:
            raise ValueError("a grounding encoder needs a text grounding to feed")
        self.image_encoder = image_encoder
        self.grounding_encoder = grounding_encoder
        self.text_encoder = text_encoder
        self.text_grounding = text_grounding
        self.grounding_refiner = grounding_refiner
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.preprocessor = preprocessor

    @property
    def takes_mask_prompts(self) -> bool:
        return self.prompt_encoder.mask_downscaling is not None

    @property
    def image_size(self) -> int:
        return self.preprocessor.image_size

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised -> (B, D, S/16, S/16)."""
        return self.image_encoder(images)

    def embed_image_with_pixels(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The embedding and, with a grounding refiner, its text-agnostic (B, C, S/4, S/4) pixel
        features (both cached per image by the predictor); None without a refiner. Both from
        `image_encoder`: what training reads (see `embed_for_prompts` for inference)."""
        return self._embed_with_pixels(self.image_encoder, images)

    def _embed_with_pixels(self, encoder: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.grounding_refiner is None:
            return encoder(images), None
        embedding, skips = encoder.forward_with_skips(images)
        return embedding, self.grounding_refiner.pixel_features(embedding, skips)

    def embed_for_prompts(self, images: torch.Tensor) -> ImageFeatures:
        """Everything prompts read from one image, cached by the predictor: the decoder's
        embedding, and the text grounding's embedding and pixel features (from the grounding
        encoder where there is one, else the same embedding)."""
        if self.grounding_encoder is None:
            embedding, pixels = self.embed_image_with_pixels(images)
            return ImageFeatures(embedding, embedding, pixels)
        grounding, pixels = self._embed_with_pixels(self.grounding_encoder, images)
        return ImageFeatures(self.embed_image(images), grounding, pixels)

    def encode_text(self, texts: list[str] | None = None, embeddings: torch.Tensor | None = None) -> TextTokens:
        return self.text_encoder(texts=texts, embeddings=embeddings)

    def ground_text(self, image_embeddings: torch.Tensor, text: TextTokens) -> torch.Tensor | None:
        """(B, h, w) logits of where each text prompt is (`TextGrounding`); None without it."""
        if self.text_grounding is None:
            return None
        if text.sentence_embeddings is None:
            raise ValueError("these text tokens carry no sentence embeddings for the grounding")
        return self.text_grounding(image_embeddings, self.prompt_encoder.get_dense_pe(), text.sentence_embeddings)

    def refine_grounding(self, coarse_logits: torch.Tensor, pixel_features: torch.Tensor | None,
                         text: TextTokens) -> torch.Tensor | None:
        """(B, S/4, S/4) logits: `ground_text`'s map at the decoder's output grid; None without a
        refiner (or without pixel features)."""
        if self.grounding_refiner is None or pixel_features is None:
            return None
        return self.grounding_refiner(coarse_logits, pixel_features, text.sentence_embeddings)

    def decode(self, image_embeddings: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None = None,
               text_tokens: torch.Tensor | None = None, multimask_output: bool = True,
               grounding_logits: torch.Tensor | None = None, mask_logits: torch.Tensor | None = None) -> DecoderOutput:
        """Masks for B prompts; `image_embeddings` may be one cached (1, D, h, w) embedding;
        `grounding_logits` from `ground_text` for the same text prompts; `mask_logits` (B, S/4,
        S/4) a mask prompt (a previous answer, or `refine_grounding`'s map)."""
        sparse, dense = self.prompt_encoder(points, text_tokens, grounding_logits, mask_logits)
        return self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                 multimask_output)
