"""Complementary categories ("complete the look"): data/complements.json, beside the catalog, which the
catalog owner edits: {"<category>": ["<category it goes with>", ...], ...}. Read by the search service,
checked against the catalog's categories by validation (so a typo stops a retrain with its name)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

COMPLEMENTS_FILE = "complements.json"


def read_complements(data_dir: Path) -> dict[str, list[str]]:
    """The file's mapping ({} when there is none); ValueError naming the file when it is not that shape."""
    path = Path(data_dir) / COMPLEMENTS_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v) for k, v in raw.items()
    ):
        raise ValueError(f'{path} must map each category to a list of categories: {{"Trouser": ["Shirt", "Bag"]}}')
    return raw


def complement_problems(complements: dict[str, list[str]], categories: list[str]) -> list[str]:
    """Every name in the mapping that is not one of the catalog's categories, with the closest one."""
    known, problems = set(categories), []
    for name in dict.fromkeys([*complements, *(o for others in complements.values() for o in others)]):
        if name not in known:
            close = difflib.get_close_matches(name, categories, n=1)
            problems.append(
                f"{name!r} is not a category of the catalog" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
    return problems


def complements_of(complements: dict[str, list[str]], categories: list[str]) -> dict[str, list[str]]:
    """The mapping restricted to the catalog's categories (a category never complements itself)."""
    known = set(categories)
    return {c: [o for o in others if o in known and o != c] for c, others in complements.items() if c in known}
