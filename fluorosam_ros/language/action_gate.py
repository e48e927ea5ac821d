"""The learned action gate of spoken commands: how likely the parser's reading of what the
recogniser heard is the command that was said, from measurements of the recognition.

Why learned. The hand gate (`speech.parse_recognition` with `motion_gap`, `word_gap`,
`motion_agreement`, `motion_confidence`) asks each measurement to pass its own threshold; to act
on none of the tuning split's off-topic talk every threshold had to be strict, and a third of
the evaluation's failures were commands the recogniser had heard exactly, asked to be repeated. The measurements disagree
about different utterances, so one logistic model over all of them separates better than the
intersection of their thresholds.

Fitting (`fluorosam evaluate-language --fit-gate`): the tuning split only (eval/tuning.yaml's
off-topic sentences + commands drawn from the corpus grammar), each utterance whose ungated
reading would act labelled 1 when that reading is the expected intent+slots and 0 otherwise.
The floors and the threshold are chosen on out-of-fold probabilities (folds by sentence, so a
sentence's other voices never score it: the probabilities an utterance gets from a model that
never saw it, as on the evaluation set; averaged over 20 splits into folds): the lowest
threshold that lets none of the tuning negatives act (off-topic talk, incomplete near-commands)
and keeps misheard commands to 1.5 % of the actions (`choose_floors`). A threshold from the
talk alone let 3 of the evaluation's 140 negatives act (one an exposure: "can you hear me"
heard "can you fire me") and 32 misheard commands (weights/COMMAND_ASR.md).

A gate is fitted to one acoustic model; the file records that model's SHA-256 and the
recogniser refuses a gate fitted to other weights (its fits mean something else there). It also
records the command word model's fingerprint: a gate fitted before the phrase lists or the
vocabulary changed is used, with a warning to refit it (fitted the same way before and after
session 14's parser edits, run 6's gate scored 63.9 % and 69.5 % on the evaluation); so is one
fitted with other beam-search settings (the word model's fusion weight, the word bonus, the beam).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

FORMAT = "fluorosam-action-gate/1"
BUNDLED_NAME = "command_gate.json"
FEATURES = ("fit", "worst_word_fit", "mean_word_fit", "parser_confidence", "agreement", "agreement_mass",
            "margin", "lm_per_word", "log_words", "log_alternatives")
MAX_MARGIN = 15.0   # ln; an N-best without another reading counts as this sure
REFIT_HINT = "refit it with `fluorosam evaluate-language --fit-gate`"


class ActionGateError(RuntimeError):
    """A gate file that cannot be used (missing, damaged, of another format or acoustic model)."""


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high)) if math.isfinite(value) else (low if value < 0 or math.isnan(value)
                                                                         else high)


def action_features(recognition, confidence: float, readings: Sequence[bool]) -> np.ndarray:
    """The measurements of one recognition whose reading would act, in `FEATURES` order.

    `confidence`: the parser's confidence in the heard words; `readings[i]`: whether the i-th
    N-best alternative reads as the same intent and slots as the best one."""
    details = recognition.details
    word_fits = [fit for _, fit in details.get("word_fits", [])] or [0.0]
    scores = np.asarray(details.get("alternative_scores") or [0.0], dtype=np.float64)
    same = np.asarray(list(readings) or [True], dtype=bool)[:len(scores)]
    scores = scores[:len(same)]
    posterior = np.exp(scores - scores.max())
    posterior /= posterior.sum()
    other = scores[~same]
    words = max(len(recognition.text.split()), 1)
    return np.array([
        _clip(recognition.gap, -1.0, 0.5),
        _clip(min(word_fits), -12.0, 0.0),
        _clip(float(np.mean(np.clip(word_fits, -12.0, 0.0))), -12.0, 0.0),
        float(confidence),
        float(same.mean()),
        float(posterior[same].sum()),
        _clip(scores[0] - other.max(), 0.0, MAX_MARGIN) if other.size else MAX_MARGIN,
        _clip(details.get("lm_per_word", 0.0), -15.0, 0.0),
        math.log(words),
        math.log(max(len(scores), 1)),
    ])


@dataclass
class ActionGate:
    """p(the reading is right) = sigmoid(weights . (features - mean) / scale + bias)."""

    weights: list[float]
    bias: float
    mean: list[float]
    scale: list[float]
    threshold: float = 0.5
    # floors the probability cannot buy off: a fluent, well-fitting decode of talk into command
    # words ("can you check the drain" heard "can you see the brain") scores high on every
    # measurement but these two, and the logistic model adds where these must veto
    min_agreement: float = 0.0
    min_word_fit: float = -1e9
    # the same on the N-best's posterior: a share counts an alternative the decoder barely
    # considered as much as the best one; its probability mass does not
    min_agreement_mass: float = 0.0
    features: tuple[str, ...] = FEATURES
    acoustic_sha256: str = ""
    # the command word model's corpus (acoustic/recognizer.word_model_sha256): it is rebuilt from
    # the parser's phrase lists and the vocabulary at start-up, so editing them changes what is
    # heard and how sure the recogniser is, and the threshold fitted before no longer means the same
    word_model_sha256: str = ""
    # the beam search's settings (beam, fusion weight, word bonus, ...): they decide which words
    # win and how many alternatives agree (lowering the fusion weight from 0.8 to 0.6 moved 45
    # right tuning readings across this gate's threshold), so a gate is fitted to one setting
    decoder_settings: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def probability(self, features: np.ndarray) -> float | np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.bias)))

    def refusal(self, features: np.ndarray) -> str:
        """Why the reading with these features may not act ("" when it may)."""
        named = dict(zip(self.features, np.asarray(features, dtype=np.float64)))
        if named["agreement"] < self.min_agreement:
            return f"{100 * named['agreement']:.0f}% of the alternatives agree < {100 * self.min_agreement:.0f}%"
        if named["worst_word_fit"] < self.min_word_fit:
            return f"worst word fits {named['worst_word_fit']:.1f} < {self.min_word_fit:.1f}"
        if named["agreement_mass"] < self.min_agreement_mass:
            return (f"{100 * named['agreement_mass']:.1f}% of the alternatives' probability agrees < "
                    f"{100 * self.min_agreement_mass:.1f}%")
        probability = float(self.probability(features))
        if probability < self.threshold:
            return f"sure of it {100 * probability:.0f}% < {100 * self.threshold:.0f}%"
        return ""

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"format": FORMAT, **asdict(self)}
        record["features"] = list(self.features)
        path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path | str, acoustic_sha256: str | None = None) -> "ActionGate":
        """The gate in `path`; with `acoustic_sha256`, only if it was fitted to those weights."""
        path = Path(path)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ActionGateError(f"action gate not found: {path}") from error
        except (OSError, ValueError) as error:
            raise ActionGateError(f"action gate {path} cannot be read: {error}") from error
        if not isinstance(record, dict) or record.pop("format", None) != FORMAT:
            raise ActionGateError(f"{path} is not a {FORMAT} file")
        try:
            gate = cls(**{**record, "features": tuple(record["features"])})
            values = [float(v) for v in [*gate.weights, *gate.mean, *gate.scale, gate.bias, gate.threshold,
                                         gate.min_agreement, gate.min_word_fit, gate.min_agreement_mass]]
        except (TypeError, KeyError, ValueError) as error:
            raise ActionGateError(f"action gate {path} is incomplete: {error}") from error
        if gate.features != FEATURES or not len(gate.weights) == len(gate.mean) == len(gate.scale) == len(FEATURES):
            raise ActionGateError(f"{path} measures {list(gate.features)}, this version {list(FEATURES)}")
        if not all(math.isfinite(v) for v in values) or min(gate.scale) <= 0:
            raise ActionGateError(f"action gate {path} holds non-finite or zero-scale values")
        if acoustic_sha256 is not None and gate.acoustic_sha256 != acoustic_sha256:
            raise ActionGateError(f"action gate {path} was fitted to another acoustic model "
                                  f"({gate.acoustic_sha256[:12]} != {acoustic_sha256[:12]}): {REFIT_HINT}")
        return gate


def bundled_action_gate() -> Path:
    """The gate shipped in the repository's `weights/` (or `$FLUOROSAM_WEIGHTS_DIR`)."""
    from ..model.build import CheckpointError, bundled_file

    try:
        return bundled_file(BUNDLED_NAME)
    except CheckpointError as error:
        raise ActionGateError(str(error)) from error


def file_sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1.0, iterations: int = 50
                 ) -> ActionGate:
    """L2-regularised logistic regression by Newton's method on standardised features."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(np.unique(y)) < 2:
        raise ValueError("fitting the gate needs a (n, features) array and both labels")
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-6] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    theta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0                       # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-z @ theta))
        gradient = z.T @ (p - y) + penalty * theta
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return ActionGate(weights=theta[:-1].tolist(), bias=float(theta[-1]), mean=mean.tolist(), scale=scale.tolist())


def out_of_fold(features: np.ndarray, labels: np.ndarray, groups: Sequence[str], folds: int = 5,
                l2: float = 1.0, repeats: int = 1) -> np.ndarray:
    """Each row's probability from gates fitted without its group (its sentence), averaged over
    `repeats` random splits of the groups into folds.

    Why repeats: the threshold is the highest held-out probability of a tuning negative, a
    maximum, and which sentences share a fold moves it. With one split, session 13's recognitions
    gave thresholds of 0.88-0.96 and 337-412 right tuning actions depending on the split's seed
    alone (measured in session 14); averaging 20 splits leaves the choice to the data."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = sorted(set(groups))
    probabilities = np.zeros(len(labels))
    for repeat in range(repeats):
        order = np.random.default_rng(repeat).permutation(names).tolist()
        fold_of = {name: index % folds for index, name in enumerate(order)}
        fold = np.array([fold_of[g] for g in groups])
        for k in range(folds):
            held = fold == k
            if held.any():
                probabilities[held] += fit_logistic(features[~held], labels[~held], l2).probability(features[held])
    return probabilities / repeats


@dataclass(frozen=True)
class GateFloors:
    """Floors the gate's probability cannot buy off (ActionGate.min_*)."""

    agreement: float = 0.0
    word_fit: float = -1e9
    agreement_mass: float = 0.0

    def passes(self, features: np.ndarray) -> np.ndarray:
        """Which rows of `features` (n, FEATURES) reach every floor."""
        return (features[:, FEATURES.index("agreement")] >= self.agreement) & \
            (features[:, FEATURES.index("worst_word_fit")] >= self.word_fit) & \
            (features[:, FEATURES.index("agreement_mass")] >= self.agreement_mass)

    def apply_to(self, gate: ActionGate) -> None:
        gate.min_agreement, gate.min_word_fit, gate.min_agreement_mass = \
            self.agreement, self.word_fit, self.agreement_mass


def choose_floors(probabilities: np.ndarray, features: np.ndarray, right: np.ndarray, must_not_act: np.ndarray,
                  agreements: Sequence[float] = (0.0, 0.3, 0.4, 0.5, 0.6),
                  word_fits: Sequence[float] = (-1e9, -4.0, -3.0, -2.0),
                  agreement_masses: Sequence[float] = (0.0, 0.9, 0.99, 0.999), max_wrong_share: float = 0.015
                  ) -> tuple[GateFloors, float]:
    """(floors, threshold) with the most right actions, where for each set of floors the
    threshold is the lowest that lets none of `must_not_act` through and keeps wrong readings
    (neither right nor must_not_act: a misheard command) to `max_wrong_share` of the actions."""
    wrong = ~right & ~must_not_act
    best: tuple[int, GateFloors, float] | None = None
    for agreement in agreements:
        for word_fit in word_fits:
            for mass in agreement_masses:
                floors = GateFloors(agreement, word_fit, mass)
                passes = floors.passes(features)
                threshold = lowest_safe_threshold(probabilities, must_not_act & passes)
                threshold = _lowest_with_wrong_share(probabilities[passes], wrong[passes], threshold, max_wrong_share)
                right_actions = int((passes & (probabilities >= threshold) & right).sum())
                if best is None or right_actions > best[0]:
                    best = (right_actions, floors, threshold)
    return best[1], best[2]


def _lowest_with_wrong_share(probabilities: np.ndarray, wrong: np.ndarray, start: float, share: float) -> float:
    """The lowest threshold >= `start` at which wrong rows are at most `share` of those acting."""
    for threshold in np.unique(np.concatenate([[start], probabilities[probabilities >= start]])):
        acts = probabilities >= threshold
        if not acts.any() or wrong[acts].sum() <= share * acts.sum():
            return float(threshold)
    return float(np.nextafter(probabilities.max(), 1.0)) if probabilities.size else start


def lowest_safe_threshold(probabilities: np.ndarray, must_not_act: np.ndarray) -> float:
    """The lowest threshold above every probability of the utterances that must not act."""
    worst = float(np.max(probabilities[must_not_act])) if np.any(must_not_act) else 0.0
    return float(np.nextafter(worst, 1.0))
