"""Free-text segmentation prompts, read by the command language front end.

The bundled model's text path learnt the vocabulary's phrasings and breaks on wrappers it never
saw: on held-out views "I need a mask of the heart" scores Dice 0.02 where "heart" scores 0.69
(weights/MODEL_CARD.md). The command parser already finds the structure a sentence names, with
the vocabulary and the descriptions the surgeon's commands use. `PromptReader` gives the model
that structure's canonical name (the text it saw with every mask of it), and leaves text that
names no structure, or two, as written. The prediction keeps the text the model was given.

The vocabulary holds the lay terms that the data engine holds out from the model's training
(`data/text.py`), so with the reader the held-out phrasings measure the reader and the
vocabulary, not the model; `fluorosam evaluate` prints both.
"""

from __future__ import annotations

import logging

from .parser import CommandParser

log = logging.getLogger(__name__)


class PromptReader:
    """text -> the canonical name of the one structure it names, or None."""

    def __init__(self, parser: CommandParser | None = None) -> None:
        self._parser = parser

    @classmethod
    def for_model(cls, model) -> "PromptReader":
        """A reader whose parser shares `model`'s frozen sentence encoder when that is MiniLM,
        the encoder the parser's description banks are embedded with: one copy in memory and
        one load (about 5 s) instead of two. Any other encoder (CLIP: another embedding space)
        leaves the parser its own MiniLM."""
        from fluorosam_ros.model.text_encoder import MiniLMSentenceEncoder  # heavy: torch

        encoder = getattr(getattr(model, "text_encoder", None), "sentence_encoder", None)
        if isinstance(encoder, MiniLMSentenceEncoder):
            return cls(CommandParser(encoder=encoder))
        return cls()

    @property
    def parser(self) -> CommandParser:
        if self._parser is None:     # the sentence encoder loads on first use, not at import
            self._parser = CommandParser()
        return self._parser

    def __call__(self, text: str) -> str | None:
        name = self.parser.structure_named(text)
        if name is None:
            return None
        canonical = self.parser.vocabulary.entry(name).display
        log.debug("prompt %r read as %r", text, canonical)
        return canonical
