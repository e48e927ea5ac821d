"""The anatomy and tool vocabulary, loaded from the reviewed data file `anatomy.yaml`.

Everything that names a structure (prompt generation, the command parser, the planner) goes
through this module, so a name means the same thing everywhere. The YAML holds what a person
must review (names, synonyms, lay terms, groups); this module generates the mechanical
phrasings from it: numbered forms ("L3", "third lumbar vertebra", "lumbar three", "3rd lumbar",
"left 5th rib") and laterality word orders ("left femur", "femur left", "femur on the left side").

Resolution is an exact lookup of a normalised surface form (case, punctuation, hyphens and a
leading article ignored; "L-3" = "l 3" = "L3"), plus one deterministic fallback for
laterality words the generated phrasings do not cover. Ambiguity is refused at load time: no
normalised surface form may name two different entries.

Decision on paired structures: an unlateralised paired noun ("femur", "thigh bone",
"collarbone", "hip bone", "lung") resolves to the bilateral group (femurs, clavicles, hips,
lungs), never to a guessed side; its forms are marked as naming ONE side (`instance="side"`), so
prompts built from them are non-comprehensive. Unlateralised numbered ribs ("fifth rib") have no
bilateral group and do not resolve.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).with_name("anatomy.yaml")
KINDS = ("structure", "group", "tool")
SIDES = ("left", "right")
LATERALITIES = SIDES + ("none",)
NUMBERS = ("singular", "plural")

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
            "tenth", "eleventh", "twelfth")
CARDINALS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
             "eleven", "twelve")
VERTEBRAL_REGIONS = {"cervical": ("C", "neck"), "thoracic": ("T", "upper back"),
                     "lumbar": ("L", "lower back"), "sacral": ("S", "sacrum")}
RIB_REGION = "rib"

# Numbered vertebra phrasings, pattern id -> template. {X}: region letter, {n}: digit,
# {o}: ordinal word, {on}: "3rd", {w}: cardinal word, {r}: region adjective.
VERTEBRA_PATTERNS = {
    "abbr": "{X}{n}",
    "abbr_vertebra": "{X}{n} vertebra",
    "vertebra_abbr": "vertebra {X}{n}",
    "abbr_body": "{X}{n} vertebral body",
    "ordinal": "{o} {r} vertebra",
    "ordinal_short": "{o} {r}",
    "ordnum": "{on} {r} vertebra",
    "ordnum_short": "{on} {r}",
    "region_word": "{r} {w}",
    "region_digit": "{r} {n}",
    "region_vertebra_digit": "{r} vertebra {n}",
}
# "Th12" is common in European reports; only the thoracic region has a two-letter form. "D12" and
# "the tenth dorsal vertebra" are the older (dorsal) names still used in India and much of Europe.
THORACIC_EXTRA = {"abbr_th": "Th{n}", "abbr_d": "D{n}", "dorsal_ordinal": "{o} dorsal vertebra",
                  "dorsal_ordnum": "{on} dorsal vertebra", "dorsal_word": "dorsal {w}", "dorsal_digit": "dorsal {n}"}
ABBREVIATION_PATTERNS = frozenset({"abbr", "abbr_th"})
RIB_PATTERNS = {
    "ordinal": "{s} {o} rib",
    "ordinal_side": "{o} {s} rib",
    "ordnum": "{s} {on} rib",
    "ordnum_side": "{on} {s} rib",
    "digit": "{s} rib {n}",
    "digit_side": "rib {n} {s}",
    "on_the": "{o} rib on the {s}",
    "on_side": "{o} rib on the {s} side",
}
# The first and the last of a numbered series named by position ("the lowest lumbar vertebra" is
# L5, "the top left rib" the 1st): {w} is one of the words, {r} the region, {s} the side.
END_WORDS = {"first": ("top", "highest", "uppermost"), "last": ("lowest", "last", "bottom")}
END_VERTEBRA_PATTERNS = {"end": "{w} {r} vertebra", "end_short": "{w} {r}"}
END_RIB_PATTERNS = {"end": "{s} {w} rib", "end_side": "{w} {s} rib", "end_on_the": "{w} rib on the {s}",
                    "end_on_side": "{w} rib on the {s} side"}
# Laterality word orders for an unlateralised term {t} and side {s}; the first is the display order.
LATERAL_PATTERNS = {
    "prefix": "{s} {t}",
    "suffix": "{t} {s}",
    "sided": "{s}-sided {t}",
    "on_the": "{t} on the {s}",
    "on_side": "{t} on the {s} side",
}
_ARTICLE = re.compile(r"^(the|a|an) ")
_LEVEL_SPACE = re.compile(r"\b(c|t|th|d|l|s)\s+(\d{1,2})\b")
_SIDE_WORDS = re.compile(r"\b(?:(?:on|of) (?:the )?)?(left|right)(?: hand)?(?: sided?)?\b")


class VocabularyError(ValueError):
    """A vocabulary file that is inconsistent or ambiguous."""


def normalize(text: str) -> str:
    """The lookup key of a phrase: lower case, punctuation and hyphens as spaces, no leading
    article, and level abbreviations joined ("L-3", "l 3" -> "l3")."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"[^a-z0-9]+", " ", text).strip()
    text = _LEVEL_SPACE.sub(r"\1\2", text)
    return _ARTICLE.sub("", text)


def ordinal_number(index: int) -> str:
    """1 -> "1st", 12 -> "12th"."""
    suffix = "th" if 10 <= index % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(index % 10, "th")
    return f"{index}{suffix}"


@dataclass(frozen=True)
class Numbering:
    """A vertebral level (region cervical|thoracic|lumbar|sacral) or a rib number (region rib)."""

    region: str
    index: int

    @property
    def level(self) -> str | None:
        """"L3", "T12", "C7", "S1"; None for ribs."""
        if self.region not in VERTEBRAL_REGIONS:
            return None
        return f"{VERTEBRAL_REGIONS[self.region][0]}{self.index}"

    @property
    def ordinal(self) -> str:
        return ORDINALS[self.index - 1]


@dataclass(frozen=True)
class SurfaceForm:
    """One phrasing of an entry.

    `origin` is the YAML term (or "numbered:<pattern>") it was generated from and
    `origin_entry` the entry that term belongs to, so held-out paraphrases can be chosen by
    term. `instance` is None when the form names the whole entry, "leaf" when it names one
    member class or one tool instance ("a rib", "screw"), "side" when it names one side of a
    bilateral group ("femur", "lung").
    """

    text: str
    source: str        # name|display|base|synonym|lay|abbreviation|numbered|member_noun|plural
    origin: str
    origin_entry: str
    plural: bool = False
    instance: str | None = None
    variant: str = "plain"   # laterality word order (see LATERAL_PATTERNS) or "plain"


@dataclass(frozen=True)
class VocabularyEntry:
    """A structure class, a group of classes, or a tool family.

    Term lists keep the YAML spelling (a `{side}` placeholder included); `term_numbers` holds
    the terms whose grammatical number differs from the entry's.
    """

    name: str
    kind: str
    display: str
    description: str
    laterality: str = "none"
    number: str = "singular"
    base: str | None = None
    synonyms: tuple[str, ...] = ()
    lay: tuple[str, ...] = ()
    abbreviations: tuple[str, ...] = ()
    member_noun: tuple[str, ...] = ()
    plural_forms: tuple[str, ...] = ()
    numbering: Numbering | None = None
    members: tuple[str, ...] = ()
    bilateral: bool = False
    # Free descriptive phrases for answering questions ("the bone next to the hip"); used by
    # the command parser's embedding fallback only, never as prompts or surface forms.
    clues: tuple[str, ...] = ()
    label: int | None = None
    term_numbers: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def plural(self) -> bool:
        return self.number == "plural"

    @property
    def level(self) -> str | None:
        return self.numbering.level if self.numbering else None

    def term_is_plural(self, term: str) -> bool:
        return self.term_numbers.get(term, self.number) == "plural"


# ------------------------------------------------------------------------------------------
# Parsing the YAML into entries
# ------------------------------------------------------------------------------------------

def _terms(raw: Mapping[str, Any], key: str, numbers: dict[str, str]) -> tuple[str, ...]:
    """A term list; `{text, number}` items record their number override in `numbers`."""
    result = []
    for item in raw.get(key) or ():
        if isinstance(item, Mapping):
            text = str(item["text"])
            numbers[text] = str(item.get("number", "singular"))
        else:
            text = str(item)
        result.append(text)
    return tuple(result)


def _fill_side(text: str, laterality: str) -> str:
    if laterality not in SIDES:
        return text
    return text.replace("{side}", laterality).replace("{S}", laterality[0].upper())


def _numbered_display(numbering: Numbering, laterality: str) -> tuple[str, str]:
    """(display, description) of a numbered vertebra or rib."""
    if numbering.region == RIB_REGION:
        return (f"{laterality} {numbering.ordinal} rib",
                f"the rib {numbering.ordinal} from the top on the {laterality} side of the chest")
    where = VERTEBRAL_REGIONS[numbering.region][1]
    return (f"{numbering.ordinal} {numbering.region} vertebra",
            f"the vertebra {numbering.ordinal} from the top of the {where}")


def _parse_numbering(raw: Mapping[str, Any] | None, name: str) -> Numbering | None:
    if raw is None:
        return None
    numbering = Numbering(str(raw["region"]), int(raw["index"]))
    if numbering.region != RIB_REGION and numbering.region not in VERTEBRAL_REGIONS:
        raise VocabularyError(f"{name}: unknown numbering region {numbering.region!r}")
    if not 1 <= numbering.index <= len(ORDINALS):
        raise VocabularyError(f"{name}: numbering index {numbering.index} out of range")
    return numbering


def _parse_entry(raw: Mapping[str, Any], kind: str) -> VocabularyEntry:
    name = str(raw.get("name") or "")
    if not name:
        raise VocabularyError(f"a {kind} entry has no name: {dict(raw)}")
    laterality = str(raw.get("laterality", "none"))
    if laterality not in LATERALITIES:
        raise VocabularyError(f"{name}: laterality {laterality!r} not in {LATERALITIES}")
    numbers: dict[str, str] = {}
    numbering = _parse_numbering(raw.get("numbering"), name)
    base = raw.get("base")
    display, description = raw.get("display"), raw.get("description")
    if numbering is not None:
        generated = _numbered_display(numbering, laterality)
        display, description = display or generated[0], description or generated[1]
    if display is None and base is not None:
        display = f"{laterality} {base}" if laterality in SIDES else base
    default_number = "plural" if kind == "group" else "singular"
    entry = VocabularyEntry(
        name=name, kind=kind, display=_fill_side(str(display or ""), laterality),
        description=_fill_side(str(description or ""), laterality), laterality=laterality,
        number=str(raw.get("number", default_number)), base=None if base is None else str(base),
        synonyms=_terms(raw, "synonyms", numbers), lay=_terms(raw, "lay", numbers),
        abbreviations=_terms(raw, "abbreviations", numbers),
        member_noun=_terms(raw, "member_noun", numbers), plural_forms=_terms(raw, "plural", numbers),
        numbering=numbering, members=tuple(str(m) for m in raw.get("members") or ()),
        bilateral=bool(raw.get("bilateral", False)),
        clues=tuple(_fill_side(str(c), laterality) for c in raw.get("clues") or ()),
        label=None if raw.get("label") is None else int(raw["label"]), term_numbers=numbers)
    _check_entry(entry)
    return entry


def _check_entry(entry: VocabularyEntry) -> None:
    if not entry.display:
        raise VocabularyError(f"{entry.name}: no display name")
    if entry.number not in NUMBERS:
        raise VocabularyError(f"{entry.name}: number {entry.number!r} not in {NUMBERS}")
    # Questions are built as "which NOUN is PREDICATE?", so the shape is part of the contract.
    if len(entry.description.split()) < 3 or not entry.description.startswith("the "):
        raise VocabularyError(f"{entry.name}: description must read 'the NOUN PREDICATE'")
    if "{" in entry.display + entry.description:
        raise VocabularyError(f"{entry.name}: a {{side}} placeholder in an unlateralised entry")
    if entry.kind == "group" and not entry.members:
        raise VocabularyError(f"{entry.name}: a group without members")


def _expand_sides(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A `sides:` item becomes one raw entry per side sharing the other keys."""
    if "sides" not in raw:
        return [dict(raw)]
    shared = {key: value for key, value in raw.items() if key != "sides"}
    expanded = []
    for side, specific in raw["sides"].items():
        if side not in SIDES:
            raise VocabularyError(f"sides of {raw.get('base')!r}: {side!r} is not left/right")
        expanded.append({**shared, **specific, "laterality": side})
    return expanded


def parse_entries(data: Mapping[str, Any]) -> list[VocabularyEntry]:
    """All entries of a vocabulary document, in file order."""
    entries = []
    for section, kind in (("structures", "structure"), ("groups", "group"), ("tools", "tool")):
        for raw in data.get(section) or ():
            entries.extend(_parse_entry(item, kind) for item in _expand_sides(raw))
    return entries


# ------------------------------------------------------------------------------------------
# Surface forms
# ------------------------------------------------------------------------------------------

def _lateral_texts(term: str, laterality: str) -> list[tuple[str, str]]:
    """(text, variant) phrasings of a term for an entry's side."""
    if laterality not in SIDES:
        return [(term, "plain")]
    if "{side}" in term or "{S}" in term:
        return [(_fill_side(term, laterality), "plain")]
    return [(pattern.format(s=laterality, t=term), variant)
            for variant, pattern in LATERAL_PATTERNS.items()]


def _numbered_forms(entry: VocabularyEntry) -> list[SurfaceForm]:
    numbering = entry.numbering
    assert numbering is not None
    values = dict(n=numbering.index, o=numbering.ordinal, on=ordinal_number(numbering.index),
                  w=CARDINALS[numbering.index - 1], r=numbering.region, s=entry.laterality)
    if numbering.region == RIB_REGION:
        patterns = RIB_PATTERNS
    else:
        values["X"] = VERTEBRAL_REGIONS[numbering.region][0]
        patterns = {**VERTEBRA_PATTERNS, **(THORACIC_EXTRA if numbering.region == "thoracic" else {})}
    return [SurfaceForm(pattern.format(**values),
                        "abbreviation" if pattern_id in ABBREVIATION_PATTERNS else "numbered",
                        f"numbered:{pattern_id}", entry.name, entry.plural)
            for pattern_id, pattern in patterns.items()]


def _entry_forms(entry: VocabularyEntry) -> list[SurfaceForm]:
    """Every phrasing of an entry from its own fields (bilateral ones are added later)."""
    # Tool names are instance nouns ("screw" = one screw); their plural forms ask for all.
    instance = "leaf" if entry.kind == "tool" else None
    forms = [SurfaceForm(entry.display, "display", entry.display, entry.name, entry.plural, instance)]
    if entry.numbering is not None:
        forms += _numbered_forms(entry)
    sources = (("base", (entry.base,) if entry.base else ()), ("synonym", entry.synonyms),
               ("lay", entry.lay))
    for source, terms in sources:
        for term in terms:
            plural = entry.term_is_plural(term)
            forms += [SurfaceForm(text, source, term, entry.name, plural, instance, variant)
                      for text, variant in _lateral_texts(term, entry.laterality)]
    forms += [SurfaceForm(_fill_side(term, entry.laterality), "abbreviation", term, entry.name,
                          entry.term_is_plural(term), instance) for term in entry.abbreviations]
    for term in entry.member_noun:
        forms += [SurfaceForm(text, "member_noun", term, entry.name, False, "leaf", variant)
                  for text, variant in _lateral_texts(term, entry.laterality)]
    forms += [SurfaceForm(term, "plural", term, entry.name, True) for term in entry.plural_forms]
    forms.append(SurfaceForm(entry.name.replace("_", " "), "name", entry.name, entry.name,
                             entry.plural, instance))
    return forms


def _bilateral_forms(group: VocabularyEntry, side: VocabularyEntry) -> list[SurfaceForm]:
    """A side's unlateralised terms, for its bilateral group: a bare "femur" names one femur
    of the pair, a bare plural ("ribs") names the whole pair."""
    forms = []
    terms = [("base", t) for t in ((side.base,) if side.base else ())]
    terms += [("synonym", t) for t in side.synonyms] + [("lay", t) for t in side.lay]
    terms += [("member_noun", t) for t in side.member_noun]
    for source, term in terms:
        if "{" in term:
            continue
        plural = source != "member_noun" and side.term_is_plural(term)
        instance = None if plural else ("leaf" if source == "member_noun" else "side")
        forms.append(SurfaceForm(term, source, term, side.name, plural, instance))
    return forms


def _dedupe(forms: Iterable[SurfaceForm]) -> list[SurfaceForm]:
    """First phrasing of each normalised text wins (own fields before derived ones)."""
    seen: set[str] = set()
    result = []
    for form in forms:
        key = normalize(form.text)
        if key and key not in seen:
            seen.add(key)
            result.append(form)
    return result


# ------------------------------------------------------------------------------------------
# The vocabulary
# ------------------------------------------------------------------------------------------

class Vocabulary:
    """Entries by canonical name, their surface forms, and the resolver."""

    def __init__(self, entries: Iterable[VocabularyEntry], source: Path | None = None,
                 not_segmented: Iterable[str] = ()) -> None:
        self.source = source
        self._entries: dict[str, VocabularyEntry] = {}
        for entry in entries:
            if entry.name in self._entries:
                raise VocabularyError(f"duplicate entry name {entry.name!r}")
            self._entries[entry.name] = entry
        self._check_groups()
        self._forms = {name: _dedupe(_entry_forms(entry)) for name, entry in self._entries.items()}
        for group in self.groups():
            if group.bilateral:
                derived = [form for side in group.members
                           for form in _bilateral_forms(group, self.entry(side))]
                self._forms[group.name] = _dedupe(self._forms[group.name] + derived)
        for name, forms in self._end_forms().items():
            self._forms[name] = _dedupe(self._forms[name] + forms)
        self._index = self._build_index()
        self.not_segmented = self._check_not_segmented(not_segmented)
        self._not_segmented = re.compile(r"\b(?:" + "|".join(
            re.escape(t) for t in sorted(self.not_segmented, key=len, reverse=True)) + r")\b") \
            if self.not_segmented else None
        log.debug("vocabulary: %d entries, %d surface forms", len(self._entries), len(self._index))

    @classmethod
    def load(cls, path: str | Path | None = None) -> Vocabulary:
        """Read a vocabulary YAML (default: the package's anatomy.yaml)."""
        path = Path(path) if path is not None else DEFAULT_PATH
        with path.open(encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
        if not isinstance(data, Mapping):
            raise VocabularyError(f"{path}: not a mapping")
        return cls(parse_entries(data), source=path, not_segmented=data.get("not_segmented") or ())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        return cls(parse_entries(data), not_segmented=data.get("not_segmented") or ())

    # -- validation ---------------------------------------------------------------------

    def _check_groups(self) -> None:
        for group in self.groups():
            unknown = [m for m in group.members if m not in self._entries]
            if unknown:
                raise VocabularyError(f"group {group.name}: unknown members {unknown}")
            if group.bilateral:
                sides = sorted(self._entries[m].laterality for m in group.members)
                if sides != ["left", "right"]:
                    raise VocabularyError(
                        f"bilateral group {group.name} needs one left and one right member")
            self.group_members(group.name)   # raises on cycles

    def _end_forms(self) -> dict[str, list[SurfaceForm]]:
        """Forms naming the first and the last member of each numbered series (per region and side)."""
        series: dict[tuple[str, str], list[VocabularyEntry]] = {}
        for entry in self._entries.values():
            if entry.numbering is not None:
                series.setdefault((entry.numbering.region, entry.laterality), []).append(entry)
        forms: dict[str, list[SurfaceForm]] = {}
        for (region, side), members in series.items():
            if len(members) < 2:
                continue
            members.sort(key=lambda e: e.numbering.index)
            patterns = END_RIB_PATTERNS if region == RIB_REGION else END_VERTEBRA_PATTERNS
            for end, entry in (("first", members[0]), ("last", members[-1])):
                forms[entry.name] = [SurfaceForm(pattern.format(w=word, r=region, s=side), "numbered",
                                                 f"numbered:{pattern_id}", entry.name, entry.plural)
                                     for word in END_WORDS[end] for pattern_id, pattern in patterns.items()]
        return forms

    def _check_not_segmented(self, terms: Iterable[str]) -> tuple[str, ...]:
        keys = tuple(dict.fromkeys(normalize(str(term)) for term in terms))
        known = [key for key in keys if self.resolve(key) is not None]
        if known:
            raise VocabularyError(f"not_segmented terms that an entry resolves: {known}")
        return keys

    def not_segmented_term(self, text: str) -> str:
        """The first anatomy term in `text` that names no entry ("ureter", "tibia"), or ""."""
        if self._not_segmented is None:
            return ""
        match = self._not_segmented.search(normalize(text))
        return match.group(0) if match else ""

    def _build_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        clashes = []
        for name, forms in self._forms.items():
            for form in forms:
                key = normalize(form.text)
                if index.setdefault(key, name) != name:
                    clashes.append(f"{form.text!r}: {index[key]} / {name}")
        if clashes:
            raise VocabularyError("ambiguous surface forms: " + "; ".join(clashes))
        return index

    # -- lookup -------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> VocabularyEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"no vocabulary entry named {name!r}") from None

    def names(self, kind: str | None = None) -> list[str]:
        return [name for name, entry in self._entries.items() if kind is None or entry.kind == kind]

    def structures(self) -> list[VocabularyEntry]:
        return [e for e in self._entries.values() if e.kind == "structure"]

    def groups(self) -> list[VocabularyEntry]:
        return [e for e in self._entries.values() if e.kind == "group"]

    def tools(self) -> list[VocabularyEntry]:
        return [e for e in self._entries.values() if e.kind == "tool"]

    def group_members(self, name: str) -> list[str]:
        """The structure classes (or tools) a name stands for, nested groups expanded, in
        file order without repeats; a structure or tool stands for itself."""
        return self._expand(name, ())

    def _expand(self, name: str, path: tuple[str, ...]) -> list[str]:
        if name in path:
            raise VocabularyError(f"group cycle: {' -> '.join(path + (name,))}")
        entry = self.entry(name)
        if entry.kind != "group":
            return [name]
        result: list[str] = []
        for member in entry.members:
            result += [m for m in self._expand(member, path + (name,)) if m not in result]
        return result

    def forms(self, name: str) -> list[SurfaceForm]:
        """The structured surface forms of an entry (see SurfaceForm)."""
        self.entry(name)
        return list(self._forms[name])

    def surface_forms(self, name: str) -> list[str]:
        """All phrasings of an entry: display, synonyms, lay terms, abbreviations, generated
        numbered and laterality forms (article-free: a leading "the"/"a" is ignored anyway)."""
        return [form.text for form in self.forms(name)]

    def index(self) -> dict[str, str]:
        """Normalised surface form -> canonical name (a copy)."""
        return dict(self._index)

    def resolve(self, text: str) -> str | None:
        """The canonical name a phrase denotes, or None. Exact normalised lookup first; then,
        if the phrase carries exactly one side word, the rest is resolved and the side applied
        ("thigh bone of the left hand side" -> femur_left via the bilateral group femurs)."""
        key = normalize(text)
        if key in self._index:
            return self._index[key]
        # "the heart and the great vessels": articles inside a name
        inner = re.sub(r" (?:the|a|an) ", " ", f" {key} ").strip()
        if inner != key and inner in self._index:
            return self._index[inner]
        return self._resolve_side(key)

    def _resolve_side(self, key: str) -> str | None:
        sides = set(_SIDE_WORDS.findall(key))
        if len(sides) != 1:
            return None
        side = sides.pop()
        rest = normalize(_SIDE_WORDS.sub(" ", key))
        # a numbered rib has no side-less form: "5th rib on the left" is "left 5th rib"
        name = self._index.get(rest) or self._index.get(normalize(f"{side} {rest}"))
        if name is None:
            return None
        entry = self._entries[name]
        if entry.laterality == side:
            return name
        if entry.bilateral:
            return next(m for m in entry.members if self._entries[m].laterality == side)
        return None


@lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    """The package vocabulary, loaded once."""
    return Vocabulary.load()
