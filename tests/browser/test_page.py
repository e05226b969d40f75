"""The search page in a real browser: Debian chromium + chromedriver driven by selenium (nothing downloaded).
A Fashion-MNIST photo that is not in the catalog is uploaded on the page; a text query is typed; screenshots
are saved under test-artifacts/."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FASHION_MNIST, ServiceThread, needs_fashion_mnist

pytestmark = [
    pytest.mark.browser,
    needs_fashion_mnist,
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="Debian chromium and chromium-driver not installed (make test installs them)",
    ),
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def real_service(tmp_path_factory, prefect_harness):
    from lensflow.core.settings import get_settings
    from lensflow.flows.retrain import RetrainParams, retrain
    from lensflow.tasks.sample import build_sample_catalog

    root = tmp_path_factory.mktemp("browser")
    mp = pytest.MonkeyPatch()
    for k, v in {"LENSFLOW_ROOT": str(root), "LENSFLOW_LOADER_WORKERS": "0"}.items():
        mp.setenv(k, v)
    get_settings.cache_clear()
    s = get_settings()
    catalog = build_sample_catalog(s.data_path, limit=1000)
    retrain(
        params=RetrainParams(
            epochs=6,
            approval="auto-approve",
            progress=False,
            shopper_queries=50,
            heldout_photos=10,
            heldout_combined=30,
        )
    )
    with ServiceThread(s) as service:
        yield service, catalog, root
    mp.undo()
    get_settings.cache_clear()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--disable-gpu",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def unseen_photo(catalog, out: Path) -> tuple[Path, str]:
    """A Fashion-MNIST test image whose product is not in the catalog, saved as a shopper would send it."""
    from lensflow.tasks.sample import CATEGORIES, TEST_FILES, read_idx

    images, labels = read_idx(FASHION_MNIST.parent / TEST_FILES[0], FASHION_MNIST.parent / TEST_FILES[1])
    in_catalog = set(catalog.product_id)
    i = next(
        i for i in range(len(images)) if labels[i] == CATEGORIES.index("Trouser") and f"fm-te-{i:05d}" not in in_catalog
    )
    Image.fromarray(np.asarray(images[i])).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC).save(
        out, quality=90
    )
    return out, "Trouser"


def categories_shown(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [c.get_attribute("data-category") for c in driver.find_elements(By.CSS_SELECTOR, "#results .card")]


def wait_status(driver, text: str, timeout: float = 60) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(EC.text_to_be_present_in_element((By.ID, "status"), text))


def test_photo_upload_and_text_query_in_a_real_browser(real_service, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    service, catalog, root = real_service
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(service.url + "/")
    WebDriverWait(browser, 30).until(lambda d: "v1" in d.find_element(By.ID, "model-version").text)
    assert "lensflow-encoder v1" in browser.find_element(By.TAG_NAME, "footer").text

    photo, category = unseen_photo(catalog, tmp_path / "my-trousers.jpg")
    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait_status(browser, "results for your photo")
    shown = categories_shown(browser)
    browser.save_screenshot(str(ARTIFACTS / "browser-photo-search.png"))
    assert len(shown) == 24 and sum(c == category for c in shown[:10]) >= 8, shown[:10]
    first = browser.find_element(By.CSS_SELECTOR, "#results .card img")
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", first)
    )

    browser.find_element(By.ID, "clear").click()
    box = browser.find_element(By.ID, "q")
    box.send_keys("ankle boots")
    browser.find_element(By.ID, "go").click()
    wait_status(browser, 'results for "ankle boots"')
    shown = categories_shown(browser)
    browser.save_screenshot(str(ARTIFACTS / "browser-text-search.png"))
    assert sum(c == "Ankle boot" for c in shown[:10]) >= 8, shown[:10]

    # the category filter, then "more like this" on the first result
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.ID, "category")).select_by_value("Sneaker")
    wait_status(browser, 'results for "ankle boots"')
    WebDriverWait(browser, 30).until(lambda d: set(categories_shown(d)) == {"Sneaker"})
    browser.find_element(By.CSS_SELECTOR, "#results .card button").click()
    wait_status(browser, "more like")
    assert set(categories_shown(browser)) == {"Sneaker"}
    browser.save_screenshot(str(ARTIFACTS / "browser-more-like-this.png"))


def two_product_photo(
    catalog, root: Path, out: Path
) -> tuple[Path, list[str], list[tuple[float, float, float, float]]]:
    """A shopper's photo with two catalog products side by side on a table (a trouser left, a bag right)."""
    rows = [catalog[(catalog.category == c) & (catalog.split == "test")].iloc[0] for c in ("Trouser", "Bag")]
    rng = np.random.default_rng(7)
    canvas = Image.fromarray(np.clip(90 + rng.normal(0, 6, (300, 480, 3)), 0, 255).astype(np.uint8))
    boxes = [(30, 40, 230, 260), (270, 50, 460, 240)]
    for row, (x0, y0, x1, y1) in zip(rows, boxes):
        with Image.open(root / "data" / row.image_path) as im:
            product = im.convert("RGB").resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC)
        mask = product.convert("L").point(lambda v: 255 if v > 12 else 0)
        canvas.paste(product, (x0, y0), mask)
    canvas.save(out, quality=92)
    return out, [r.product_id for r in rows], [tuple(v / s for v, s in zip(b, (480, 300, 480, 300))) for b in boxes]


def forget_results(driver) -> None:
    """Empty the results and the status, so that waiting for them waits for the next search."""
    driver.execute_script(
        "document.getElementById('results').innerHTML = ''; document.getElementById('status').textContent = '';"
    )


def shown_ids(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [c.get_attribute("data-product-id") for c in driver.find_elements(By.CSS_SELECTOR, "#results .card")]


def test_two_products_are_offered_and_a_dragged_box_searches_inside_it(real_service, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    service, catalog, root = real_service
    ARTIFACTS.mkdir(exist_ok=True)
    photo, ids, boxes = two_product_photo(catalog, root, tmp_path / "two-products.jpg")
    browser.get(service.url + "/")
    WebDriverWait(browser, 30).until(lambda d: "v1" in d.find_element(By.ID, "model-version").text)
    browser.find_element(By.ID, "file").send_keys(str(photo))
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#regions button.region")) >= 2)
    wait_status(browser, "results for your photo")
    browser.save_screenshot(str(ARTIFACTS / "browser-two-products.png"))
    offered = browser.find_elements(By.CSS_SELECTOR, "#regions button.region")
    found = []
    for button in offered[:2]:
        rel = [float(v) for v in button.get_attribute("data-box").split(",")]
        centre = ((rel[0] + rel[2]) / 2, (rel[1] + rel[3]) / 2)
        which = next(i for i, b in enumerate(boxes) if b[0] <= centre[0] <= b[2] and b[1] <= centre[1] <= b[3])
        forget_results(browser)
        button.click()
        wait_status(browser, "results for your photo (inside the box)")
        WebDriverWait(browser, 30).until(lambda d, b=button: "active" in b.get_attribute("class"))
        assert ids[which] in shown_ids(browser)[:10], (which, shown_ids(browser)[:10])
        found.append(which)
    assert sorted(found) == [0, 1]  # each product was offered, and each one finds itself

    # drag a box around the bag: the search runs inside it alone
    img = browser.find_element(By.ID, "preview-img")
    w, h = img.size["width"], img.size["height"]
    x0, y0, x1, y1 = boxes[1]
    forget_results(browser)
    chain = ActionChains(browser)
    chain.move_to_element_with_offset(img, int((x0 - 0.5) * w) + 2, int((y0 - 0.5) * h) + 2).click_and_hold()
    chain.move_by_offset(int((x1 - x0) * w) - 4, int((y1 - y0) * h) - 4).release().perform()
    wait_status(browser, "results for your photo (inside the box)")
    WebDriverWait(browser, 30).until(lambda d: ids[1] in shown_ids(d)[:10])
    assert sum(c == "Bag" for c in categories_shown(browser)[:10]) >= 6
    browser.save_screenshot(str(ARTIFACTS / "browser-dragged-box.png"))


def test_a_session_gets_recommendations_the_look_and_facets(real_service, browser):
    """A shopper arrives by a shared link, views three products, sees recommendations, opens "complete the
    look" and narrows the results with a facet; the link follows the search."""
    from urllib.parse import parse_qs, urlparse

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from lensflow.tasks.sample import SAMPLE_COMPLEMENTS

    service, catalog, root = real_service
    browser.get(service.url + "/?q=ankle+boots")  # a deep link: the search runs on arrival
    wait_status(browser, 'results for "ankle boots"')
    assert browser.find_element(By.ID, "q").get_attribute("value") == "ankle boots"
    assert "score" not in browser.find_element(By.ID, "results").text  # no raw similarity numbers for shoppers
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")[:3]
    seen = [c.get_attribute("data-product-id") for c in cards]
    for c in cards:
        c.find_element(By.TAG_NAME, "img").click()
    assert browser.execute_script("return JSON.parse(localStorage.getItem('lensflow.viewed'))") == seen
    shown = "return [...document.querySelectorAll('#recs-row .card')].map((c) => c.dataset.productId)"
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.getElementById('recs').dataset.for") == ",".join(seen)
    )  # the recommendations for all three views are shown
    recs = browser.execute_script(shown)
    assert len(recs) == 8 and not set(recs) & set(seen)

    first = browser.find_element(By.CSS_SELECTOR, "#results .card")
    first.find_element(By.CSS_SELECTOR, "button.look").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#look-groups .look-group"))
    groups = browser.find_elements(By.CSS_SELECTOR, "#look-groups .look-group")
    expected = SAMPLE_COMPLEMENTS[first.get_attribute("data-category")]
    assert [g.get_attribute("data-category") for g in groups] == expected
    for g in groups:
        shown = {c.get_attribute("data-category") for c in g.find_elements(By.CSS_SELECTOR, ".card")}
        assert shown == {g.get_attribute("data-category")}
    browser.save_screenshot(str(ARTIFACTS / "browser-session.png"))

    facet = next(
        b for b in browser.find_elements(By.CSS_SELECTOR, "#facets button") if b.get_attribute("data-value") != ""
    )
    value = facet.get_attribute("data-value")
    forget_results(browser)
    facet.click()
    wait_status(browser, 'results for "ankle boots"')
    WebDriverWait(browser, 30).until(lambda d: set(categories_shown(d)) == {value})
    assert parse_qs(urlparse(browser.current_url).query) == {"q": ["ankle boots"], "category": [value]}

    # a colour facet (the enrichment's tags): a click filters by it, the link carries it, a reload keeps it
    colour = next(b for b in browser.find_elements(By.CSS_SELECTOR, "#facets button.attr"))
    column, tag = colour.get_attribute("data-column"), colour.get_attribute("data-value")
    assert column == "colours" and colour.text.startswith(f"colour: {tag} (")
    forget_results(browser)
    colour.click()
    wait_status(browser, 'results for "ankle boots"')
    query = parse_qs(urlparse(browser.current_url).query)
    assert query == {"q": ["ankle boots"], "category": [value], "filter": [f"colours:{tag}"]}
    import httpx

    api = httpx.get(
        f"{service.url}/search/text",
        params={"q": "ankle boots", "mode": "hybrid", "category": value, "filter": f"colours:{tag}", "limit": 24},
        timeout=30,
    ).json()
    assert shown_ids(browser) == [h["product_id"] for h in api["results"]] and api["results"]
    assert all(tag in r["colours"] for r in served_rows(root, shown_ids(browser)))
    browser.refresh()
    wait_status(browser, 'results for "ankle boots"')
    assert browser.find_element(By.CSS_SELECTOR, "#facets button.attr.active").get_attribute("data-value") == tag


def served_rows(root, ids: list[str]) -> list[dict]:
    """The served table's rows for these products (what the index stored for them)."""
    from lensflow.core.champion import resolve_champion
    from lensflow.core.index import connect
    from lensflow.core.settings import get_settings

    assert get_settings().root == root
    index = resolve_champion(get_settings()).index
    rows = connect(index["uri"]).open_table(index["table"]).to_pandas().set_index("product_id")
    return [rows.loc[i].to_dict() for i in ids]
