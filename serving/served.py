"""The served pair: the champion's encoder and exactly the LanceDB table it records, loaded together."""

from __future__ import annotations

from dataclasses import dataclass

from lensflow.core.champion import Champion, IndexMismatch, index_problems, model_dir, resolve_champion, restore_index
from lensflow.core.dvc import DvcError
from lensflow.core.index import connect
from lensflow.core.settings import Settings


@dataclass
class Served:
    champion: Champion
    encoder: object
    table: object


def load_champion(settings: Settings, device: str = "cpu") -> Served:
    """The champion encoder and exactly its index (pulled from DVC when missing); IndexMismatch when they
    do not match."""
    import mlflow

    from lensflow.models.encoder import load_encoder

    champ = resolve_champion(settings)
    try:
        restore_index(settings, champ)
    except DvcError as exc:
        raise IndexMismatch(
            f"refusing to serve {champ.name} v{champ.version}: its index is not on disk and {exc}"
        ) from exc
    problems = index_problems(champ)
    if problems:
        raise IndexMismatch(f"refusing to serve {champ.name} v{champ.version}: " + "; ".join(problems))
    mlflow.set_tracking_uri(settings.tracking_uri)
    encoder = load_encoder(model_dir(champ.source), device=device)
    table = connect(champ.index["uri"]).open_table(champ.index["table"])
    return Served(champ, encoder, table)
