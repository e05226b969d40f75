"""Measure a freshly trained version (the challenger) and the champion on the same evaluation set, record
the result on the run and the version, and name it `challenger`: what the gate and the reviewer compare."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lensflow.core import registry
from lensflow.core.index import connect
from lensflow.core.settings import Settings
from lensflow.models.encoder import DualEncoder
from lensflow.tasks import stage
from lensflow.tasks.baseline import Baseline, EvalPlan, champion_on_eval_set, measure
from lensflow.tasks.evaluate import EvalResult, Gallery
from lensflow.tasks.helpers.report import write_report
from lensflow.tasks.index import IndexInfo, index_record
from lensflow.tasks.mislabel import likely_mislabelled, mislabelled
from lensflow.tasks.tracking import TrackedRun
from lensflow.tasks.validate import report_dir


@dataclass
class Comparison:
    result: EvalResult
    baseline: Baseline | None

    @property
    def champion_version(self) -> int | None:
        return self.baseline.version if self.baseline else None

    @property
    def champion_metrics(self) -> dict | None:
        return self.baseline.result.metrics if self.baseline else None


def evaluate_challenger(
    s: Settings,
    run: TrackedRun,
    encoder: DualEncoder,
    catalog: pd.DataFrame,
    data_md5: str,
    index: IndexInfo,
    plan: EvalPlan,
) -> Comparison:
    """Shopper photos (training recipe and held-out), text and image queries against the challenger's own
    index; the champion on the same set; metrics and the report on the run (with the catalog rows whose photo
    disagrees with their category: likely_mislabelled.csv, also beside the validation report); the version
    tagged `ready`."""
    table = connect(index.uri).open_table(index.table)
    gallery = Gallery.from_table(table)  # read once for both evaluations
    result = measure(s, encoder, gallery, catalog, data_md5, plan, table)
    baseline = champion_on_eval_set(s, run.c, catalog, data_md5, plan)
    compared = Comparison(result, baseline)
    run.log_metrics(result.metrics)
    run.log_metrics({f"{m}.{_slug(cat)}": v for cat, ms in result.per_category.items() for m, v in ms.items()})
    if baseline:
        run.log_metrics(baseline.result.metrics, prefix="champion.")
    report = run.work / "eval"
    report.mkdir(parents=True, exist_ok=True)
    flagged = flagged_rows(table, gallery)
    for folder in (report, report_dir(s, data_md5)):  # with the evaluation, and beside the validation report
        folder.mkdir(parents=True, exist_ok=True)
        flagged.to_csv(folder / "likely_mislabelled.csv", index=False)
    run.log_metrics({"likely_mislabelled_rows": len(flagged)})
    write_report(
        report,
        result,
        baseline.result if baseline else None,
        compared.champion_version,
        catalog,
        s.data_path,
        {"index": index.as_dict()},
    )
    run.log_artifacts(report, "evaluation")
    compared_with = {"champion_version": compared.champion_version, "metrics": compared.champion_metrics}
    run.tag_version(
        {
            "index": index_record(index, data_md5),
            "metrics": result.metrics,
            "eval_set_md5": result.eval_set_md5,
            "eval_bounds": result.bounds,
            "status": "ready",
            "compared_with": compared_with if baseline else {},
        }
    )
    run.c.set_registered_model_alias(s.registered_model, registry.CHALLENGER, str(run.version))
    return compared


def flagged_rows(table, gallery: Gallery) -> pd.DataFrame:
    """The likely mislabelled rows: from the table's enrichment columns, or voted now for a table without them."""
    if "predicted_category" not in table.schema.names:
        return likely_mislabelled(gallery.ids, gallery.categories, gallery.vectors)
    columns = ["product_id", "category", "predicted_category", "category_confidence"]  # not the vectors again
    t = table.search().select(columns).limit(len(gallery.ids)).to_arrow().to_pydict()
    return mislabelled(*(t[c] for c in columns))


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")


evaluate_challenger_task = stage(evaluate_challenger, name="evaluate")
