"""Catalog rows whose photo disagrees with their category: the enrichment's neighbour vote (tasks/enrich.py)
predicts another category with a confident share. Flagged rows are reported with the evaluation
(likely_mislabelled.csv), never quarantined: a person decides."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensflow.tasks.enrich import vote_categories

MIN_CONFIDENCE = 0.9  # share of the vote the other category must reach
COLUMNS = ["product_id", "category", "predicted", "confidence"]


def mislabelled(ids, categories, predicted, confidence, min_confidence: float = MIN_CONFIDENCE) -> pd.DataFrame:
    """[product_id, category, predicted, confidence] of the rows whose predicted category is another one with at
    least `min_confidence` of the vote, most confident first."""
    frame = pd.DataFrame(
        {"product_id": ids, "category": categories, "predicted": predicted, "confidence": confidence}, columns=COLUMNS
    )
    frame = frame[(frame.predicted != frame.category) & (frame.predicted != "") & (frame.confidence >= min_confidence)]
    return frame.sort_values(["confidence", "product_id"], ascending=[False, True]).reset_index(drop=True)


def likely_mislabelled(
    ids: np.ndarray, categories: np.ndarray, vectors: np.ndarray, min_confidence: float = MIN_CONFIDENCE
) -> pd.DataFrame:
    """`mislabelled` with the vote taken now, over `vectors` (for a table built without enrichment columns)."""
    predicted, confidence = vote_categories(vectors, np.asarray(categories))
    return mislabelled(ids, categories, predicted, confidence, min_confidence)
