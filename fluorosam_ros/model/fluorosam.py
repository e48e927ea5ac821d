"""The FluoroSAM model: image encoder, text prompt path, prompt encoder and mask decoder."""

from __future__ import annotations

import torch
from torch import nn

from .mask_decoder import DecoderOutput, MaskDecoder
from .preprocessing import Preprocessor
from .prompt_encoder import PromptEncoder
from .text_encoder import TextPromptEncoder, TextTokens


class FluoroSAM(nn.Module):
    """Segment-anything structure with a text prompt token (frozen sentence encoder -> MLP -> VQ)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: TextPromptEncoder,
                 prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder, preprocessor: Preprocessor) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.preprocessor = preprocessor

    @property
    def image_size(self) -> int:
        return self.preprocessor.image_size

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised -> (B, D, S/16, S/16)."""
        return self.image_encoder(images)

    def encode_text(self, texts: list[str] | None = None, embeddings: torch.Tensor | None = None) -> TextTokens:
        return self.text_encoder(texts=texts, embeddings=embeddings)

    def decode(self, image_embeddings: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None = None,
               text_tokens: torch.Tensor | None = None, multimask_output: bool = True) -> DecoderOutput:
        """Masks for B prompts; `image_embeddings` may be one cached (1, D, h, w) embedding."""
        sparse, dense = self.prompt_encoder(points, text_tokens)
        return self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                 multimask_output)
