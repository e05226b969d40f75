from PIL import Image

from lensflow.tasks.evaluate import EvalResult
from lensflow.tasks.helpers.report import comparison_table, per_category_plot, recall_curves_plot, worst_queries_sheet


def result(shift=0.0):
    curves = {"image": [0.5 + shift + k / 40 for k in range(10)], "shopper": [0.2 + k / 20 for k in range(10)]}
    per = {"bag": {"image_precision_at_10": 0.9, "shopper_recall_at_1": 0.3}, "shoe": {"image_precision_at_10": 0.7}}
    return EvalResult({"image_precision_at_10": 0.8 + shift, "zero_shot_accuracy": 0.7}, per, "md5", {}, curves, [])


def test_comparison_table_shows_deltas_and_missing_champion():
    table = comparison_table(result(0.05).metrics, result().metrics, "champion v3")
    assert "| image_precision_at_10 | 0.8500 | 0.8000 | +0.0500 |" in table and "champion v3" in table
    assert "| zero_shot_accuracy | 0.7000 | - | - |" in comparison_table(result().metrics, None)


def test_plots_are_written(tmp_path):
    a = recall_curves_plot(result(0.1), result(), tmp_path / "curves.png")
    b = per_category_plot(result(), tmp_path / "cats.png")
    for path in (a, b):
        with Image.open(path) as im:
            assert im.size[0] > 200 and im.size[1] > 100


def test_worst_queries_sheet_has_a_row_per_query(project, tiny_catalog, tmp_path):
    r = result()
    assert worst_queries_sheet(r, tiny_catalog, project.data_path, tmp_path / "none.png") is None
    ids = tiny_catalog["product_id"].tolist()
    r.worst = [{"product_id": ids[0], "results": ids[1:4]}, {"product_id": ids[5], "results": ids[6:9]}]
    path = worst_queries_sheet(r, tiny_catalog, project.data_path, tmp_path / "worst.png", thumb=32)
    with Image.open(path) as im:
        assert im.size == (5 * 32, 2 * 32)


def test_robustness_table_and_the_generalisation_gap_line():
    from lensflow.cli import heldout_lines
    from lensflow.tasks.helpers.report import robustness_table

    metrics = {"shopper_recall_at_1": 0.8}
    for cond, r1 in (("framing", 0.7), ("rotation", 0.5), ("combined", 0.4)):
        metrics |= {
            f"heldout_{cond}_recall_at_1": r1,
            f"heldout_{cond}_recall_at_10": r1 + 0.2,
            f"heldout_{cond}_category_precision_at_10": 0.9,
        }
    table = robustness_table(metrics, {"heldout_combined_recall_at_1": 0.3}, "champion v1")
    assert (
        "| rotation | 0.500 | 0.700 | 0.900 | - |" in table and "| combined | 0.400 | 0.600 | 0.900 | 0.300 |" in table
    )
    assert "0.800 vs 0.400 (generalisation gap +0.400)" in table
    headline = comparison_table(metrics, None)
    assert (
        "heldout_combined_recall_at_1" in headline and "heldout_rotation" not in headline
    )  # conditions: their own table
    lines = heldout_lines(metrics)
    assert (
        "R@1 0.400, R@10 0.600" in lines[0] and "framing 0.70, rotation 0.50" in lines[1] and "gap +0.400" in lines[2]
    )
    assert "not measured" in heldout_lines({"image_precision_at_10": 0.9})[0]
