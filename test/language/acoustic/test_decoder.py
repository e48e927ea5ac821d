"""CTC prefix beam search with the fused command word model, on hand-made posteriors."""

from __future__ import annotations

import math

import numpy as np

from fluorosam_ros.language.acoustic.decoder import (BeamConfig, beam_search, best_path_log_prob,
                                                     command_word_model)
from fluorosam_ros.language.acoustic.transcript import ALPHABET


def posteriors(path: str, sure: float = 0.9, also: dict[int, str] | None = None, second: float | None = None
               ) -> np.ndarray:
    """Log-posteriors spelling `path` frame by frame ('_' is the blank); at step i in `also`,
    a second letter gets the probability `second` (default: the same as the path's)."""
    out = np.full((len(path), len(ALPHABET)), (1 - sure) / (len(ALPHABET) - 1))
    for step, char in enumerate(path):
        out[step, ALPHABET.index(char)] = sure
        if also and step in also:
            out[step, ALPHABET.index(also[step])] = sure if second is None else second
    return np.log(out / out.sum(axis=1, keepdims=True))


def test_clear_speech_decodes_with_blanks_repeats_and_spaces():
    log_probs = posteriors("__ss_t_oo_p___  __aa_l_l__")
    best = beam_search(log_probs)[0]
    assert best.text == "stop all"
    assert best.acoustic >= best_path_log_prob(log_probs) - 1e-9    # every alignment of the text counts


def test_a_doubled_letter_without_a_blank_is_one_letter():
    assert beam_search(posteriors("_all_"))[0].text == "al"


def test_word_model_picks_the_command_word_the_acoustics_cannot_separate():
    ambiguous = posteriors("_s_t_o_p_", also={5: "a"})           # "stop" or "stap", equally likely
    assert {h.text for h in beam_search(ambiguous, nbest=5)} >= {"stop", "stap"}
    words = command_word_model([["stop"], ["stop", "moving"], ["zoom", "in"]])
    fused = beam_search(ambiguous, words, BeamConfig(lm_weight=1.0, lexicon_only=False))
    assert fused[0].text == "stop"
    assert fused[0].score > fused[1].score


def test_without_the_lexicon_constraint_unknown_talk_is_written_out():
    words = command_word_model([["stop"], ["zoom", "in"], ["take", "a", "shot"]])
    best = beam_search(posteriors("_l_u_n_c_h_"), words, BeamConfig(lexicon_only=False))[0]
    assert best.text == "lunch"
    assert best.score < best.acoustic                            # the unknown word was charged


def test_with_the_lexicon_constraint_only_known_words_are_written():
    words = command_word_model([["collimate"], ["stop"], ["zoom", "in"]])
    misheard = posteriors("_c_a_l_l_i_m_a_t_e_", also={3: "o"}, second=0.02)   # "callimate", "o" second
    assert beam_search(misheard)[0].text == "callimate"                     # the acoustics alone
    best = beam_search(misheard, words)[0]
    assert best.text == "collimate"
    assert best.acoustic < best_path_log_prob(misheard) - 3       # the fit shows what "o" cost
    assert all(h.text in ("collimate", "stop", "zoom", "in", "zoom in") or not h.text
               for h in beam_search(posteriors("_l_u_n_c_h_"), words, nbest=5))


def test_nbest_is_unique_and_sorted():
    hypotheses = beam_search(posteriors("_z_oo_m_ _i_n_", sure=0.5), nbest=8)
    texts = [h.text for h in hypotheses]
    assert len(texts) == len(set(texts)) and len(texts) > 1
    assert all(a.score >= b.score for a, b in zip(hypotheses, hypotheses[1:]))
    assert math.isfinite(hypotheses[0].score)


def test_known_words_spoken_without_a_space_are_split():
    run_together = posteriors("_s_t_o_p_m_o_v_i_n_g_")
    assert beam_search(run_together)[0].text == "stopmoving"
    words = command_word_model([["stop", "moving"], ["stop"], ["zoom", "in"]])
    assert beam_search(run_together, words)[0].text == "stop moving"


def test_alignment_and_word_deficits():
    from fluorosam_ros.language.acoustic.decoder import align, word_deficits

    log_probs = posteriors("__ss_t_oo_p_  _a_l_l__")
    emitted = align(log_probs, "stop all")
    letters = [i for i in emitted if i >= 0]
    assert sorted(set(letters)) == list(range(len("stop all")))          # every letter, in order
    assert letters == sorted(letters)
    heard = dict(word_deficits(log_probs, "stop all"))
    assert heard["stop"] == 0.0 and heard["all"] == 0.0                  # the best path itself
    forced = dict(word_deficits(log_probs, "stop ill"))
    assert forced["stop"] == 0.0 and forced["ill"] < -3                  # "a" heard, "i" written


def test_word_fits_do_not_need_a_space_the_acoustics_never_wrote():
    from fluorosam_ros.language.acoustic.decoder import word_deficits

    run_together = posteriors("stopmoving")          # no blank, no space: only the letters fit
    fits = dict(word_deficits(run_together, "stop moving"))
    assert fits == {"stop": 0.0, "moving": 0.0}
