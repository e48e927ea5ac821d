"""The prompt reader: free segmentation text -> the canonical name of the one structure it names."""

from __future__ import annotations

import pytest

from fluorosam_ros.language.parser import CommandParser, ParserConfig
from fluorosam_ros.language.prompt_reader import PromptReader


@pytest.fixture(scope="module")
def grammar_reader() -> PromptReader:
    """The vocabulary's spans alone (no encoder)."""
    return PromptReader(CommandParser(config=ParserConfig(use_embeddings=False)))


@pytest.fixture(scope="module")
def reader() -> PromptReader:
    return PromptReader()


@pytest.mark.parametrize("text, canonical", [
    # the held-out wrappers of the data engine (the model scores them near 0)
    ("I need a mask of the heart", "heart"),
    ("can you locate the left clavicle?", "left clavicle"),
    ("isolate the GI tract in this image", "gastrointestinal tract"),
    # lay terms, Latin, abbreviations, numbers, word order
    ("show me the food pipe", "esophagus"),
    ("mark each of the costae", "ribs"),
    ("I need a mask of the L1", "first lumbar vertebra"),
    ("the right rib 6", "right sixth rib"),
    ("left lung lower lobe", "left lower lobe of the lung"),
    ("heart", "heart"),
])
def test_a_sentence_naming_one_structure_gives_its_canonical_name(grammar_reader, text, canonical):
    assert grammar_reader(text) == canonical


@pytest.mark.parametrize("text", ["the liver and the spleen", "spleen or liver", "my dog", "", "   "])
def test_a_list_or_no_structure_is_left_as_written(grammar_reader, text):
    assert grammar_reader(text) is None


def test_a_description_is_answered_even_when_it_names_landmarks(reader):
    # "heart" and "spine" place the answer; the sentence asks for neither
    assert reader("can you locate the artery leaving the heart and running down along the spine?") == "aorta"
    assert reader("the intestine leaving the stomach and curving around the pancreas") == "duodenum"


def test_a_described_bone_is_not_the_whole_skeleton(reader):
    """"bone" alone names the skeleton; with a description it is the description's category."""
    assert reader("the long bone of the left thigh") == "left femur"
    assert reader("the big bone in the middle of the back") != "skeleton"     # as written, if unanswered
    assert reader("the bones") == "skeleton"


def test_a_reader_for_a_minilm_model_shares_its_sentence_encoder():
    """One MiniLM in memory, loaded once, for the model's text path and the parser's banks."""
    from types import SimpleNamespace

    from fluorosam_ros.model.text_encoder import MiniLMSentenceEncoder

    encoder = MiniLMSentenceEncoder()           # nothing loads until the first encode
    model = SimpleNamespace(text_encoder=SimpleNamespace(sentence_encoder=encoder))
    assert PromptReader.for_model(model).parser.encoder is encoder


def test_a_reader_for_another_encoder_keeps_its_own_minilm():
    """CLIP embeds in another space than the parser's banks: the parser must not use it."""
    from types import SimpleNamespace

    from fluorosam_ros.model.text_encoder import MiniLMSentenceEncoder

    clip_like = SimpleNamespace(encode=lambda texts: None, dim=512)
    model = SimpleNamespace(text_encoder=SimpleNamespace(sentence_encoder=clip_like))
    own = PromptReader.for_model(model).parser.encoder
    assert own is not clip_like and isinstance(own, MiniLMSentenceEncoder)
