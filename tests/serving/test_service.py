"""The search service over HTTP (uvicorn on 127.0.0.1): every endpoint, bad inputs, hot swap."""

from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import served_project

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def svc(tmp_path_factory, prefect_harness):
    """A tiny project with champion v1 and an approved-later v2, served with small upload limits."""
    env = {"LENSFLOW_SWAP_POLL_S": "0.2", "LENSFLOW_MAX_UPLOAD_BYTES": "200000", "LENSFLOW_MAX_IMAGE_PIXELS": "250000"}
    looks = {"Red shirt": ["Blue shoe", "Green bag"], "Blue shoe": ["Red shirt"]}  # Green bag: no complements
    root = tmp_path_factory.mktemp("service")
    with served_project(root, env, epochs=3, price=True, later_seeds=(1,), complements=looks) as served:
        yield served


def png(size=(40, 30), colour=(40, 60, 210)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def post_image(url: str, data: bytes, ctype: str = "image/png", **params) -> httpx.Response:
    return httpx.post(f"{url}/search/image", content=data, headers={"Content-Type": ctype}, params=params, timeout=30)


def test_health_version_and_page(svc):
    service, s, catalog = svc
    h = httpx.get(f"{service.url}/health").json()
    assert h["status"] == "ok" and h["model_version"] == 1
    v = httpx.get(f"{service.url}/version").json()
    from lensflow.core.champion import resolve_champion

    champ = resolve_champion(s)
    assert v["model_version"] == 1 and v["index"]["fingerprint"] == champ.index["fingerprint"]
    assert v["index"]["rows"] == len(catalog) and v["data_md5"] == champ.tags["data_md5"] and v["has_price"]
    assert v["categories"] == sorted(catalog["category"].unique())
    page = httpx.get(service.url + "/")
    assert page.status_code == 200 and 'id="results"' in page.text and "model-version" in page.text


def test_text_search_filters_pagination_and_hybrid(svc):
    service, _, catalog = svc
    r = httpx.get(f"{service.url}/search/text", params={"q": "Blue shoe", "limit": 8})
    body = r.json()
    assert r.status_code == 200 and body["model_version"] == 1 and r.headers["X-Model-Version"] == "1"
    scores = [h["score"] for h in body["results"]]
    assert len(scores) == 8 and scores == sorted(scores, reverse=True)
    assert all(h["image_url"] == f"/images/{h['product_id']}" for h in body["results"])
    page2 = httpx.get(f"{service.url}/search/text", params={"q": "Blue shoe", "limit": 3, "offset": 3}).json()[
        "results"
    ]
    assert [h["product_id"] for h in page2] == [h["product_id"] for h in body["results"][3:6]]
    only = httpx.get(
        f"{service.url}/search/text", params={"q": "Blue shoe", "category": "Green bag", "limit": 20}
    ).json()["results"]
    assert len(only) == 12 and {h["category"] for h in only} == {"Green bag"}  # filter inside the search: all 12 found
    cheap = httpx.get(
        f"{service.url}/search/text", params={"q": "shirt", "max_price": 12, "min_price": 11, "limit": 50}
    ).json()
    assert cheap["results"] and all(11 <= h["price"] <= 12 for h in cheap["results"])
    assert len(cheap["results"]) == int(((catalog.price >= 11) & (catalog.price <= 12)).sum())
    hybrid = httpx.get(f"{service.url}/search/text", params={"q": "number 7", "mode": "hybrid", "limit": 36}).json()[
        "results"
    ]
    assert len(hybrid) == 36 and all(h["text_rank"] or h["vector_rank"] for h in hybrid)
    # only the titles "<category> number 7" hold the rare term "7": they are the full-text side's top 3
    assert {h["product_id"] for h in hybrid if h["text_rank"] and h["text_rank"] <= 3} == {"p0007", "p1007", "p2007"}
    assert [h["score"] for h in hybrid] == sorted((h["score"] for h in hybrid), reverse=True)


def test_photo_search_and_text_modifier(svc):
    service, s, catalog = svc
    row = catalog.iloc[5]
    data = (s.data_path / row.image_path).read_bytes()
    ctype = "image/jpeg" if row.image_path.endswith(".jpg") else "image/png"
    hits = post_image(service.url, data, ctype, limit=5).json()["results"]
    assert hits[0]["product_id"] == row.product_id and hits[0]["score"] > 0.99
    # weight 1: only the modifier counts, so the results are the text search's; weight 0: the photo's
    text = httpx.get(f"{service.url}/search/text", params={"q": "Green bag", "limit": 5}).json()["results"]
    as_text = post_image(service.url, data, ctype, modifier="Green bag", modifier_weight=1.0, limit=5).json()["results"]
    assert [h["product_id"] for h in as_text] == [h["product_id"] for h in text]
    as_photo = post_image(service.url, data, ctype, modifier="Green bag", modifier_weight=0.0, limit=5).json()[
        "results"
    ]
    assert [h["product_id"] for h in as_photo] == [h["product_id"] for h in hits]

    # in between, every product's score is the same blend of its photo and text scores (up to one norm)
    def score(hits):
        return {h["product_id"]: h["score"] for h in hits}

    p_all = score(post_image(service.url, data, ctype, limit=36).json()["results"])
    t_all = score(httpx.get(f"{service.url}/search/text", params={"q": "Green bag", "limit": 36}).json()["results"])
    m_all = score(
        post_image(service.url, data, ctype, modifier="Green bag", modifier_weight=0.3, limit=36).json()["results"]
    )
    ratio = np.array(
        [m_all[k] / (0.7 * p_all[k] + 0.3 * t_all[k]) for k in m_all if abs(0.7 * p_all[k] + 0.3 * t_all[k]) > 0.05]
    )
    assert len(m_all) == 36 and len(ratio) > 20 and ratio.std() < 1e-3 and ratio.mean() >= 1.0
    filtered = post_image(service.url, data, ctype, category="Blue shoe", limit=3).json()["results"]
    assert {h["category"] for h in filtered} == {"Blue shoe"}


def test_photo_box_and_detect(svc):
    """A photo of two catalog products side by side: a box around either finds its kind; /detect offers regions."""
    service, s, catalog = svc
    a, b = catalog.iloc[2], catalog[catalog.category != catalog.iloc[2].category].iloc[3]
    canvas = Image.new("RGB", (120, 60), (255, 255, 255))
    for row, x in ((a, 0), (b, 60)):
        with Image.open(s.data_path / row.image_path) as im:
            canvas.paste(im.convert("RGB").resize((60, 60)), (x, 0))
    buf = io.BytesIO()
    canvas.save(buf, "PNG")
    data = buf.getvalue()
    left = post_image(service.url, data, box="0,0,0.5,1", limit=3).json()["results"]
    right = post_image(service.url, data, box="60,0,120,60", limit=3).json()["results"]  # pixels
    assert [h["category"] for h in left] == [a.category] * 3 and [h["category"] for h in right] == [b.category] * 3
    regions = httpx.post(f"{service.url}/detect", content=data, headers={"Content-Type": "image/png"}).json()
    assert regions["model_version"] == 1 and (regions["width"], regions["height"]) == (120, 60)
    assert regions["regions"] and all(0 <= v <= 1 for r in regions["regions"] for v in r["relative"])
    for bad, words in (("1,2,3", "four numbers"), ("0.5,0,0.5,1", "empty"), ("0,0,nan,1", "finite")):
        r = post_image(service.url, data, box=bad)
        assert r.status_code == 400 and words in r.json()["error"], r.text


def test_more_like_this_and_images(svc):
    service, s, catalog = svc
    pid = catalog.product_id.iloc[0]
    sim = httpx.get(f"{service.url}/products/{pid}/similar", params={"limit": 5}).json()
    ids = [h["product_id"] for h in sim["results"]]
    assert len(ids) == 5 and pid not in ids and sim["model_version"] == 1
    img = httpx.get(f"{service.url}/images/{pid}")
    assert img.status_code == 200 and img.content == (s.data_path / catalog.image_path.iloc[0]).read_bytes()
    assert img.headers["content-type"] in ("image/png", "image/jpeg")


@pytest.mark.parametrize(
    "case",
    [
        "not-an-image",
        "truncated",
        "too-many-pixels",
        "too-large-body",
        "wrong-type",
        "empty-body",
        "unknown-product",
        "unknown-image",
        "empty-query",
        "unknown-category",
        "bad-limit",
        "no-query",
        "price-range",
    ],
)
def test_bad_inputs_get_clear_4xx(svc, case):
    service, s, catalog = svc
    url = service.url
    good = png()
    r = {
        "not-an-image": lambda: post_image(url, b"hello, I am text" * 10),
        "truncated": lambda: post_image(url, good[: len(good) // 2]),
        "too-many-pixels": lambda: post_image(url, png((600, 500))),
        "too-large-body": lambda: post_image(url, b"\0" * 300_000),
        "wrong-type": lambda: post_image(url, good, "text/plain"),
        "empty-body": lambda: post_image(url, b""),
        "unknown-product": lambda: httpx.get(f"{url}/products/nope/similar"),
        "unknown-image": lambda: httpx.get(f"{url}/images/nope"),
        "empty-query": lambda: httpx.get(f"{url}/search/text", params={"q": "   "}),
        "unknown-category": lambda: httpx.get(f"{url}/search/text", params={"q": "x", "category": "Hats"}),
        "bad-limit": lambda: httpx.get(f"{url}/search/text", params={"q": "x", "limit": 0}),
        "no-query": lambda: httpx.get(f"{url}/search/text"),
        "price-range": lambda: httpx.get(f"{url}/search/text", params={"q": "x", "min_price": 5, "max_price": 1}),
    }[case]()
    expected = {
        "not-an-image": 415,
        "truncated": 400,
        "too-many-pixels": 413,
        "too-large-body": 413,
        "wrong-type": 415,
        "empty-body": 400,
        "unknown-product": 404,
        "unknown-image": 404,
        "empty-query": 400,
        "unknown-category": 400,
        "bad-limit": 422,
        "no-query": 422,
        "price-range": 400,
    }[case]
    assert r.status_code == expected, r.text
    error = r.json()["error"]
    assert error and str(s.root) not in r.text and "Traceback" not in r.text
    words = {
        "not-an-image": "not an image",
        "truncated": "truncated",
        "too-many-pixels": "pixels",
        "too-large-body": "larger than",
        "wrong-type": "content type",
        "empty-body": "empty",
        "unknown-product": "unknown product id",
        "unknown-image": "unknown product id",
        "empty-query": "empty",
        "unknown-category": "unknown category 'Hats'",
        "bad-limit": "limit",
        "no-query": "q",
        "price-range": "min_price",
    }[case]
    assert words in error


def test_openapi_documents_every_endpoint(svc):
    service, _, _ = svc
    spec = httpx.get(f"{service.url}/openapi.json").json()
    assert {
        "/search/text",
        "/search/image",
        "/detect",
        "/products/{product_id}/similar",
        "/images/{product_id}",
        "/health",
        "/version",
    } <= set(spec["paths"])
    body = spec["paths"]["/search/image"]["post"]["requestBody"]
    assert body["required"] and {"image/jpeg", "image/png"} <= set(body["content"])
    params = {p["name"] for p in spec["paths"]["/search/image"]["post"]["parameters"]}
    assert {"modifier", "modifier_weight", "box", "category", "min_price", "max_price", "limit", "offset"} <= params
    assert (
        "SearchResponse" in spec["components"]["schemas"]
        and "415" in spec["paths"]["/search/image"]["post"]["responses"]
    )


def test_concurrent_searches_batched_together_answer_as_alone(svc):
    """16 clients at once (text queries batched into one forward and one matrix product, photos and filtered
    queries beside them): every response is what the same request gets alone."""
    service, s, catalog = svc
    photo = (s.data_path / catalog.image_path.iloc[4]).read_bytes()
    ctype = "image/jpeg" if catalog.image_path.iloc[4].endswith(".jpg") else "image/png"
    texts = ["Red shirt", "Blue shoe", "Green bag", "shirt number 3", "a blue shoe", "bag", "red", "number 11"]
    requests = [("text", {"q": q, "limit": 7}) for q in texts]
    requests += [("text", {"q": "shoe", "category": "Red shirt", "limit": 4}), ("photo", {"limit": 6})]

    def ask(c: httpx.Client, req):
        kind, params = req
        r = (
            c.get("/search/text", params=params)
            if kind == "text"
            else c.post("/search/image", content=photo, headers={"Content-Type": ctype}, params=params)
        )
        assert r.status_code == 200, r.text
        return [(h["product_id"], round(h["score"], 4)) for h in r.json()["results"]]

    with httpx.Client(base_url=service.url, timeout=30) as c:
        alone = [ask(c, req) for req in requests]
    together = [None] * (3 * len(requests))

    def client(i: int) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as c:
            for j in range(i, len(together), 16):
                together[j] = ask(c, requests[j % len(requests)])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone * 3


def test_hot_swap_under_load(svc):
    """Concurrent text and photo searches while `champion` moves v1 -> v2: no failures, each response labelled
    with the version that answered, and no client sees v1 again after it saw v2."""
    from lensflow.flows.promote import PromoteParams, promote
    from lensflow.tasks.promote import GateConfig

    service, s, catalog = svc
    photo = (s.data_path / catalog.image_path.iloc[3]).read_bytes()
    ctype = "image/jpeg" if catalog.image_path.iloc[3].endswith(".jpg") else "image/png"
    stop = threading.Event()
    seen: list[list[int]] = [[] for _ in range(8)]
    failures: list[str] = []

    def client(i: int) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as c:
            while not stop.is_set():
                r = (
                    c.get("/search/text", params={"q": "Red shirt", "limit": 5})
                    if i % 2
                    else c.post("/search/image", content=photo, headers={"Content-Type": ctype}, params={"limit": 5})
                )
                if r.status_code != 200 or r.headers.get("X-Model-Version") != str(r.json().get("model_version")):
                    failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    seen[i].append(r.json()["model_version"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    out = promote(params=PromoteParams(version=2, approval="auto-approve", gate=GateConfig(floors={}, tolerance=1.0)))
    assert out["outcome"] == "promoted"
    deadline = time.monotonic() + 30
    while httpx.get(f"{service.url}/version").json()["model_version"] != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    total = sum(len(v) for v in seen)
    assert failures == [] and total > 50
    assert all(v and v[-1] == 2 for v in seen)
    print(
        f"hot swap: {total} requests, {sum(v.count(1) for v in seen)} answered by v1, "
        f"{sum(v.count(2) for v in seen)} by v2"
    )
    for versions in seen:  # monotonic: once a client got v2 it never got v1 again
        assert versions == sorted(versions), versions
    assert sum(v.count(1) for v in seen) > 0 and sum(v.count(2) for v in seen) > 0
    h = httpx.get(f"{service.url}/health").json()
    assert h["model_version"] == 2 and h["swaps"] == 1 and h["error"] is None


def test_search_responses_carry_facets(svc):
    service, _, _ = svc
    body = httpx.get(f"{service.url}/search/text", params={"q": "Blue shoe", "limit": 5}, timeout=30).json()
    cats = body["facets"]["category"]
    assert set(cats) <= {"Red shirt", "Green bag", "Blue shoe"} and sum(cats.values()) == 36  # every candidate
    assert list(cats.values()) == sorted(cats.values(), reverse=True)
    only = httpx.get(
        f"{service.url}/search/text", params={"q": "Blue shoe", "category": "Green bag"}, timeout=30
    ).json()
    assert only["facets"]["category"] == {"Green bag": 12}
    bad = httpx.get(f"{service.url}/search/text", params={"q": "shoe", "filter": "color:red"}, timeout=30)
    assert bad.status_code == 400 and "cannot filter on 'color'" in bad.json()["error"]
    similar = httpx.get(f"{service.url}/products/p0001/similar", params={"limit": 3}, timeout=30).json()
    assert sum(similar["facets"]["category"].values()) == 35  # itself excluded


def test_recommend_from_a_session(svc):
    service, _, catalog = svc
    ids = {c: catalog.loc[catalog.category == c, "product_id"].tolist() for c in catalog.category.unique()}
    viewed = ids["Blue shoe"][:3]
    r = httpx.post(f"{service.url}/recommend", json={"viewed": viewed, "limit": 5}, timeout=30)
    body = r.json()
    assert r.status_code == 200 and r.headers["X-Model-Version"] == str(body["model_version"])
    got = [h["product_id"] for h in body["results"]]
    assert len(got) == 5 and not set(got) & set(viewed)  # never what the shopper already saw
    assert [h["category"] for h in body["results"]].count("Blue shoe") >= 3 and body["facets"]["category"]
    # likes pull, dislikes push: liking bags and disliking the shoes viewed turns the list to bags
    turned = httpx.post(
        f"{service.url}/recommend",
        json={"viewed": viewed, "liked": ids["Green bag"][:2], "disliked": viewed, "limit": 5},
        timeout=30,
    ).json()["results"]
    assert [h["category"] for h in turned].count("Green bag") >= 4
    assert not {h["product_id"] for h in turned} & set(viewed + ids["Green bag"][:2])
    # filters and pagination as on search
    shirts = httpx.post(
        f"{service.url}/recommend",
        json={"viewed": viewed, "category": "Red shirt", "limit": 4, "offset": 2},
        timeout=30,
    ).json()["results"]
    assert len(shirts) == 4 and {h["category"] for h in shirts} == {"Red shirt"}
    # bad input: unknown ids are named; an empty session says what to send
    bad = httpx.post(f"{service.url}/recommend", json={"viewed": ["p0001", "nope", "gone"]}, timeout=30)
    assert bad.status_code == 404 and "'nope'" in bad.json()["error"] and "'gone'" in bad.json()["error"]
    empty = httpx.post(f"{service.url}/recommend", json={}, timeout=30)
    assert empty.status_code == 400 and "at least one product id" in empty.json()["error"]
    assert httpx.post(f"{service.url}/recommend", json={"viewed": "p0001"}, timeout=30).status_code == 422


def test_complete_the_look(svc):
    service, _, catalog = svc
    shirt = catalog.loc[catalog.category == "Red shirt", "product_id"].iloc[0]
    r = httpx.get(f"{service.url}/products/{shirt}/complete-the-look", params={"limit": 2}, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["model_version"] >= 1 and body["category"] == "Red shirt"
    assert [g["category"] for g in body["groups"]] == ["Blue shoe", "Green bag"]
    assert all(
        len(g["results"]) == 2 and {h["category"] for h in g["results"]} == {g["category"]} for g in body["groups"]
    )
    bag = catalog.loc[catalog.category == "Green bag", "product_id"].iloc[0]
    none = httpx.get(f"{service.url}/products/{bag}/complete-the-look", timeout=30).json()
    assert none["groups"] == []  # a category without complements: an empty list, not an error
    missing = httpx.get(f"{service.url}/products/nope/complete-the-look", timeout=30)
    assert missing.status_code == 404 and "'nope'" in missing.json()["error"]


def test_describe_a_photo(svc):
    service, _, catalog = svc
    from tests.conftest import COLOURS

    for category, colour in COLOURS.items():
        r = httpx.post(
            f"{service.url}/describe", content=png((48, 36), colour), headers={"Content-Type": "image/png"}, timeout=30
        )
        body = r.json()
        assert r.status_code == 200 and r.headers["X-Model-Version"] == str(body["model_version"])
        assert body["category"] == category and 0 < body["confidence"] <= 1 and len(body["categories"]) <= 3
        assert body["colours"][0]["name"] == category.split()[0].lower()  # "Red shirt" is red
        assert category.split()[1] in body["title"].lower() and body["description"]
        assert set(body["similar"]) <= set(catalog.product_id) and len(body["similar"]) == 10
    # the same input checks as /search/image
    assert (
        httpx.post(
            f"{service.url}/describe", content=b"", headers={"Content-Type": "image/png"}, timeout=30
        ).status_code
        == 400
    )
    wrong = httpx.post(f"{service.url}/describe", content=b"hello", headers={"Content-Type": "text/plain"}, timeout=30)
    assert wrong.status_code == 415 and "image/jpeg" in wrong.json()["error"]
