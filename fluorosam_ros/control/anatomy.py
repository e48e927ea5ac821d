"""From a requested structure (a vocabulary name such as "lung_left", a TotalSegmentator label
such as "vertebrae_L3", or what a user typed) to what the loop needs: the model's prompt text
and the twin's label names that make it up (a group is the union of its members)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

from .safety import PlanningInputError


@dataclass(frozen=True)
class Target:
    name: str                    # canonical (vocabulary) name
    prompt: str                  # text for the segmentation model (the vocabulary's display name)
    members: tuple[str, ...]     # the twin's label names that make it up


class UnknownStructure(PlanningInputError):
    """Not a structure we know, or not one this patient's twin contains."""


@lru_cache(maxsize=1)
def _vocabulary():
    from ..language.vocabulary import Vocabulary

    return Vocabulary.load()


def resolve_target(name: str, twin_names: Iterable[str]) -> Target:
    """`name` as a vocabulary entry, a twin label, or a phrase the vocabulary knows ("left lung")."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownStructure("a structure name is required")
    vocabulary = _vocabulary()
    available = set(twin_names)
    key = name.strip()
    if key not in vocabulary:
        key = vocabulary.index().get(" ".join(key.lower().replace("_", " ").split()), key)
    if key in vocabulary:
        entry = vocabulary.entry(key)
        members = tuple(m for m in vocabulary.group_members(key) if m in available)
        if not members:
            raise UnknownStructure(f"'{entry.display}' is not in this patient's twin")
        return Target(key, entry.display, members)
    if key in available:
        return Target(key, key.replace("_", " "), (key,))
    raise UnknownStructure(f"unknown structure {name!r}")
