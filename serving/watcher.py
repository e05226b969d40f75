"""Hot swap: the (encoder, index) pair being served and the background watcher that replaces it, after loading
and verifying the new pair, when the `champion` alias (or its index) moves."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

from lensflow.core.champion import IndexMismatch, NoChampion, resolve_version
from lensflow.core.complements import complements_of, read_complements
from lensflow.core.redact import format_exception, redact
from lensflow.core.settings import Settings
from lensflow.serving import search as S
from lensflow.serving.served import Served, load_champion

log = logging.getLogger("lensflow.serving")


@dataclass(frozen=True)
class Live:
    """One consistent (encoder, index) pair; a request holds it from start to end."""

    served: Served
    catalog: S.Catalog
    loaded_at: str
    complements: dict[str, list[str]] = field(default_factory=dict)  # "complete the look" (data/complements.json)
    captioner: object | None = None  # models.caption.Captioner when LENSFLOW_CAPTION_MODEL is set

    @property
    def version(self) -> int:
        return self.served.champion.version

    @property
    def key(self) -> tuple:
        idx = self.served.champion.index
        return self.version, idx["table"], idx["version"]


def load_live(settings: Settings) -> Live:
    """Load and verify the champion's encoder and index (tasks.champion) and read its catalog, stamped now."""
    served = load_champion(settings)
    if settings.text_runtime == "onnxruntime":
        from lensflow.models.onnx_text import onnx_text_tower

        fast = onnx_text_tower(served.encoder.text_tower)
        if fast is not None:  # same vectors (checked), ~5x faster for one query (BENCHMARKS.md)
            served.encoder.text_tower = fast
    catalog = S.Catalog.of(served.table, settings.exact_search_max_rows, settings.serve_max_batch)
    try:
        complements = complements_of(read_complements(settings.data_path), catalog.categories)
    except ValueError as exc:  # a file edited since the last validation: search keeps working without it
        log.warning("complete the look is off: %s", exc)
        complements = {}
    captioner = None
    if settings.caption_model:
        from lensflow.models.caption import Captioner

        captioner = Captioner.load(settings.path(settings.caption_model))
    return Live(served, catalog, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), complements, captioner)


class ChampionWatcher:
    """Polls the `champion` alias; when it (or its index) changes, loads and verifies the new pair in this
    background thread, then swaps one reference. A failed load keeps serving the old pair."""

    def __init__(self, settings: Settings, poll_s: float, loader=load_live):
        self.settings, self.poll_s, self.loader = settings, poll_s, loader
        self.live: Live | None = None
        self.error: str | None = None
        self.checked_at: str | None = None
        self.checked_mono: float | None = None  # time.monotonic() of the latest check (metrics: its age)
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Load the champion if it is not the one being served. Returns whether it swapped."""
        try:
            champ = resolve_version(self.settings)
            idx = champ.index
            if self.live is not None and self.live.key == (champ.version, idx["table"], idx["version"]):
                self.error = None
                return False
            new = self.loader(self.settings)
        except (NoChampion, IndexMismatch) as exc:
            self.error = redact(str(exc))
            log.warning("champion not (re)loaded: %s", self.error)
            return False
        except Exception as exc:  # keep serving what works; say why in /health
            self.error = redact(f"{type(exc).__name__}: {exc}")
            log.error("champion not (re)loaded\n%s", format_exception(exc))
            return False
        finally:
            self.checked_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            self.checked_mono = time.monotonic()
        old, self.live = self.live, new
        self.error = None
        self.swaps += old is not None
        log.info(
            "serving %s v%d (index %s v%s)%s",
            new.served.champion.name,
            new.version,
            new.served.champion.index["table"],
            new.served.champion.index["version"],
            f", was v{old.version}" if old else "",
        )
        return True

    def start(self) -> None:
        """Load the first pair now (the service answers 503 until one loads), then poll in a daemon thread."""
        self.check()
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.check()

    def stop(self) -> None:
        """Ask the polling thread to end (it is a daemon: nothing waits for it)."""
        self._stop.set()
