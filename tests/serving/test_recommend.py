"""Recommendation and complete-the-look building blocks (plain functions, no server)."""

import json

import numpy as np
import pytest

from lensflow.core.complements import complement_problems, complements_of, read_complements
from lensflow.serving.recommend import RecommendConfig, mmr, session_vector


def unit(*v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_the_newest_view_counts_most_and_dislikes_push_away():
    vecs = {"old": unit(1, 0, 0), "new": unit(0, 1, 0), "bad": unit(0, 0, 1)}
    q = session_vector(vecs, ["old", "new"], [], [], RecommendConfig(half_life=1.0))
    assert q @ vecs["new"] > q @ vecs["old"] > 0 and np.isclose(np.linalg.norm(q), 1)
    away = session_vector(vecs, ["old", "new"], [], ["bad"], RecommendConfig(half_life=1.0))
    assert away @ vecs["bad"] < 0
    liked = session_vector(vecs, ["old"], ["new"], [], RecommendConfig())
    assert liked @ vecs["new"] > liked @ vecs["old"]  # a like outweighs one view


def test_mmr_skips_near_duplicates():
    vecs = np.stack([unit(1, 0), unit(1, 0.01), unit(0.6, 0.8)])
    scores = np.array([0.99, 0.98, 0.80])
    assert mmr(vecs, scores, 2, lam=1.0) == [0, 1]  # relevance only: the duplicate comes second
    assert mmr(vecs, scores, 2, lam=0.5) == [0, 2]  # diversified: the different one instead
    assert sorted(mmr(vecs, scores, 5, lam=0.5)) == [0, 1, 2]  # never more than there are


def test_complements_file_is_checked_against_the_catalog(tmp_path):
    assert read_complements(tmp_path) == {}
    (tmp_path / "complements.json").write_text(json.dumps({"Red shirt": ["Blue shoes", "Green bag"]}))
    problems = complement_problems(read_complements(tmp_path), ["Red shirt", "Green bag", "Blue shoe"])
    assert problems == ["'Blue shoes' is not a category of the catalog (did you mean 'Blue shoe'?)"]
    assert complements_of({"Red shirt": ["Red shirt", "Green bag", "Nope"]}, ["Red shirt", "Green bag"]) == {
        "Red shirt": ["Green bag"]
    }
    (tmp_path / "complements.json").write_text(json.dumps(["not", "a", "mapping"]))
    with pytest.raises(ValueError, match="must map each category to a list of categories"):
        read_complements(tmp_path)


def test_validation_stops_on_an_unknown_complement(tmp_path):
    from lensflow.tasks.validate import ValidationFailed, validate_catalog
    from tests.conftest import write_synthetic_catalog

    write_synthetic_catalog(tmp_path / "data")
    (tmp_path / "data" / "complements.json").write_text(json.dumps({"Red shirt": ["Green bags"]}))
    with pytest.raises(ValidationFailed, match=r"complements.json: 'Green bags' is not a category.*'Green bag'"):
        validate_catalog(tmp_path / "data", tmp_path / "report", progress=False)
    (tmp_path / "data" / "complements.json").write_text(json.dumps({"Red shirt": ["Green bag"]}))
    assert validate_catalog(tmp_path / "data", tmp_path / "report", progress=False).n_quarantined == 0


def test_attribute_filters_are_validated_and_quoted():
    from lensflow.serving.search import BadQuery, Catalog, Filters, parse_attributes, where_clause

    catalog = Catalog({}, ["Bag"], False, ["product_id", "category", "color", "brand"])
    attrs = parse_attributes(["color:red", "brand: O'Neill "])
    assert where_clause(Filters(attributes=attrs), catalog) == "color = 'red' AND brand = 'O''Neill'"
    sneaky = where_clause(Filters(attributes={"color": "x' OR '1'='1"}), catalog)
    assert sneaky == "color = 'x'' OR ''1''=''1'"  # one string literal, never SQL
    with pytest.raises(BadQuery, match="cannot filter on 'title'; this catalog's filterable columns: color, brand"):
        where_clause(Filters(attributes={"title": "x"}), catalog)
    with pytest.raises(BadQuery, match="filterable columns: $"):
        where_clause(Filters(attributes={"color": "red"}), Catalog({}, ["Bag"], False, ["product_id"]))
    with pytest.raises(BadQuery, match="expected COLUMN:VALUE"):
        parse_attributes(["red"])
