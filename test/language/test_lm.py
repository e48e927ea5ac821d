"""The command language model builder (lm.py) and the corpus drawn from the command grammar."""

from __future__ import annotations

import math
import re

import pytest

from fluorosam_ros.language.lm import (BOS, EOS, Alt, Opt, Ref, Seq, Word, NGramCounts, arpa_text, build_arpa,
                                       build_model, parse_expansion, rule_words, sample_sentences)


def test_parse_expansion_reads_jsgf_right_hand_sides():
    tree = parse_expansion("show [me] (the | a) <structure> | /3/ stop")
    assert isinstance(tree, Alt) and [w for w, _ in tree.options] == [1.0, 3.0]
    show = tree.options[0][1]
    assert isinstance(show, Seq) and show.items[0] == Word("show") and isinstance(show.items[1], Opt)
    assert show.items[3] == Ref("structure")
    assert parse_expansion("<NULL>") == Seq(())
    with pytest.raises(ValueError):
        parse_expansion("show (me")
    with pytest.raises(ValueError):
        parse_expansion("show me ]")


def test_sampling_is_seeded_and_follows_weights():
    rules = {"s": "/9/ <a> | /1/ stop", "a": "show [me] (the | a) femur"}
    first = sample_sentences(rules, "s", 2000, seed=3)
    assert first == sample_sentences(rules, "s", 2000, seed=3)
    assert first != sample_sentences(rules, "s", 2000, seed=4)
    stops = sum(s == ["stop"] for s in first)
    assert 120 < stops < 280                       # ~10 %
    assert all(s == ["stop"] or (s[0] == "show" and s[-1] == "femur") for s in first)
    assert rule_words(rules) == {"show", "me", "the", "a", "femur", "stop"}
    with pytest.raises(KeyError):
        sample_sentences({"s": "<missing>"}, "s", 1)


def test_counts_wrap_sentences():
    counts = NGramCounts(3).add_all([["stop"], ["stop", "now"]])
    assert counts.counts[0][("stop",)] == 2 and counts.counts[0][(EOS,)] == 2
    assert (BOS,) not in counts.counts[0]
    assert counts.counts[1][(BOS, "stop")] == 2 and counts.counts[2][(BOS, "stop", "now")] == 1


@pytest.mark.parametrize("background_mass", [0.0, 0.2])
def test_model_probabilities_sum_to_one_for_every_history(background_mass):
    sentences = sample_sentences({"s": "/3/ show [me] (the | a) [left] femur | stop [now] | zoom (in | out)"}, "s",
                                 500, seed=1)
    counts = NGramCounts(3).add_all(sentences)
    model = build_model(counts, lexicon=["kneecap"], background={"hello": 3.0, "weather": 1.0},
                        background_mass=background_mass)
    vocabulary = [gram[0] for gram in model.probs[0]]
    assert "kneecap" in vocabulary and BOS not in vocabulary
    for history in [(), (BOS,), (BOS, "show"), ("show", "me"), ("me", "the"), ("the", "kneecap"), ("kneecap",),
                    ("hello",), ("zoom", "in")]:
        assert sum(model.prob(w, history) for w in vocabulary) == pytest.approx(1.0, abs=1e-9), history
    # the corpus decides: "show me" is far likelier than an unseen word after "show"
    assert model.prob("me", ("show",)) > 50 * model.prob("kneecap", ("show",)) > 0
    if background_mass:
        assert model.prob("hello") > model.prob("weather") > model.prob("kneecap")


def test_arpa_text_is_well_formed():
    arpa = build_arpa([["take", "a", "shot"], ["stop"], ["take", "one"]], order=3, lexicon=["zoom"])
    lines = arpa.splitlines()
    assert lines[1] == "\\data\\" and lines[-1] == "\\end\\"
    declared = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"ngram (\d)=(\d+)", arpa)}
    sections = re.split(r"\\(\d)-grams:", arpa)[1:]
    for order, body in zip(sections[::2], sections[1::2]):
        entries = [line for line in body.split("\\end\\")[0].strip().splitlines() if line.strip()]
        assert len(entries) == declared[int(order)], order
        for entry in entries:
            fields = entry.split()
            float(fields[0])
            assert len(fields) in (1 + int(order), 2 + int(order))
    assert re.search(r"^-99\.0000 <s> ", arpa, re.M)
    assert re.search(r"^-[0-9.]+ zoom$", arpa, re.M)     # a lexicon word seen nowhere still has a unigram
    assert f"{BOS} take a" in arpa


def test_arpa_loads_in_pocketsphinx(tmp_path):
    pocketsphinx = pytest.importorskip("pocketsphinx")
    path = tmp_path / "m.arpa"
    corpus = [["take", "a", "shot"]] * 5 + [["stop"]] * 4 + [["stop", "now"]] * 3 + [["zoom", "in"], ["zoom", "out"]]
    path.write_text(build_arpa(corpus, order=3))
    model = pocketsphinx.NGramModel.readfile(str(path))
    logbase = math.log(1.0001)
    p_stop = math.exp(model.prob(["stop"]) * logbase)
    assert 0.05 < p_stop < 0.5
    # p(now | stop) (the bindings take the word, then its history backwards) comes from the
    # bigram, well above the unigram probability of "now"
    assert model.prob(["now", "stop"]) > model.prob(["now"]) + 5000


def test_corpus_is_drawn_from_the_parser_and_vocabulary_not_the_evaluation_set():
    from fluorosam_ros.language.evaluate import load_commands
    from fluorosam_ros.language.speech import corpus_rules, corpus_sentences, lm_structure_phrases
    from fluorosam_ros.language.vocabulary import default_vocabulary

    vocabulary = default_vocabulary()
    phrases = lm_structure_phrases(vocabulary)
    for said in ("left femur", "femur on the left", "collarbone", "l3", "lumbar three", "left fifth rib"):
        assert said in phrases, said
    assert not any(re.search(r"\d(st|nd|rd|th)\b", p) for p in phrases)
    sentences = corpus_sentences(vocabulary, count=3000, seed=0)
    assert sentences == corpus_sentences(vocabulary, count=3000, seed=0)
    joined = {" ".join(s) for s in sentences}
    assert any(s.startswith("stop") or s in ("halt", "freeze") for s in joined)
    assert "sentence" in corpus_rules(vocabulary)
    # the corpus never copies the evaluation set: long evaluation sentences do not appear verbatim
    # more often than chance (short ones such as "stop" or "zoom in" naturally do)
    long_ones = [c.text.lower() for c in load_commands() if len(c.text.split()) >= 6]
    copied = [t for t in long_ones if t in joined]
    assert len(copied) <= 0.05 * len(long_ones), copied
