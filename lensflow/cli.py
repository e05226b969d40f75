"""The `lensflow` command, the top layer: catalog data (sample, import), the flows (retrain, reindex, promote),
reviewers and reviews, status, one-off search and describe, the search service (serve) and the local platform
(up, down)."""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import typer

from lensflow.core.redact import format_exception, install_log_redaction, redact

app = typer.Typer(
    help="lensflow: visual product search, retrained and served with its index.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Catalog data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
review_app = typer.Typer(
    help="Promotions waiting for a reviewer (the same decision as the form in the Prefect UI).", no_args_is_help=True
)
app.add_typer(review_app, name="review")
reviewers_app = typer.Typer(
    help="Who may approve a promotion: each reviewer signs decisions with their own key.", no_args_is_help=True
)
app.add_typer(reviewers_app, name="reviewers")


def _print_version(value: bool) -> None:
    if value:
        from lensflow import __version__

        typer.echo(f"lensflow {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """lensflow: visual product search, retrained and served with its index."""


def _settings():
    from lensflow.core.runtime import offline_env
    from lensflow.core.settings import get_settings

    s = get_settings()
    offline_env(s.root)
    _platform_credential(s)
    return s


def _platform_credential(s) -> None:
    from lensflow import credentials
    from lensflow.platform import Platform

    p = Platform(s)
    credentials.adopt(p.state_dir, p.prefect_url)


def _prefect_api_url() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {redact(message)}", fg="red", err=True)
    raise typer.Exit(code)


def build_sample(limit: int | None, force: bool = False, err: bool = False) -> str:
    """Build the sample catalog and `dvc add` it; the summary line goes to stderr when `err` (stdout is JSON)."""
    from lensflow.tasks.sample import build_sample_catalog
    from lensflow.tasks.versioning import version_data

    s = _settings()
    s.data_path.mkdir(parents=True, exist_ok=True)
    df = build_sample_catalog(s.data_path, limit=limit, force=force)
    md5 = version_data(s.root, s.data_path, s.dvc_remote_url, push=False).md5
    typer.echo(f"sample catalog: {len(df)} products in {s.data_path} (DVC md5 {md5})", err=err)
    return md5


@data_app.command("sample")
def data_sample(
    limit: int | None = typer.Option(
        None, "--limit", help="build a smaller catalog of N products (default: all 70,000)"
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="DELETE the files in data/ that lensflow did not create (your catalog "
        "file, categories.json, photos: the refusal without --force lists them) and write the sample",
    ),
) -> None:
    """Build the sample catalog from Fashion-MNIST and track data/ with DVC (refused when data/ holds your files)."""
    try:
        build_sample(limit, force)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        _fail(str(exc))


@data_app.command("import")
def data_import(
    catalog: Path = typer.Argument(
        ...,
        help="your catalog: a .csv or .parquet file with product_id, title, category, "
        "image_path (+ optional description, color, price, brand, split)",
    ),
    images: Path | None = typer.Option(
        None,
        "--images",
        help="the folder image_path is relative to (a path "
        "relative to the catalog's folder is found too; default: the catalog's folder)",
    ),
    categories: Path | None = typer.Option(
        None,
        "--categories",
        help="the allowed categories: a JSON list or one name per line (default: those found in the catalog)",
    ),
    link: bool = typer.Option(False, "--link", help="hard-link the photos instead of copying them (same file system)"),
    force: bool = typer.Option(
        False,
        "--force",
        help="DELETE the files in data/ that lensflow did not create (the refusal "
        "without --force lists them) and import in their place",
    ),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Bring your own catalog into data/: copy it and its photos, check every row, track data/ with DVC.

    Prints what was read and which rows validation will quarantine (and why); then `lensflow retrain`."""
    from lensflow.tasks.helpers.catalog import CatalogError
    from lensflow.tasks.ingest import import_catalog, summary_lines
    from lensflow.tasks.validate import validate_catalog
    from lensflow.tasks.versioning import version_data

    s = _settings()
    try:
        imp = import_catalog(
            catalog,
            images or catalog.resolve().parent,
            s.data_path,
            categories,
            link=link,
            force=force,
            progress=sys.stderr.isatty(),
        )
    except (CatalogError, FileExistsError, OSError, ValueError) as exc:
        _fail(str(exc))
    md5 = version_data(s.root, s.data_path, s.dvc_remote_url, push=False).md5
    checked = validate_catalog(
        s.data_path,
        s.path(s.reports_dir) / "validation" / md5.removesuffix(".dir"),
        max_bad_fraction=1.0,
        progress=sys.stderr.isatty(),
    )
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "data_md5": md5,
                    "catalog": str(imp.catalog),
                    "rows": imp.rows,
                    "images": imp.images,
                    "categories": imp.categories,
                    "not_found": imp.missing,
                    "valid_rows": len(checked.valid),
                    "quarantined_rows": checked.n_quarantined,
                    "quarantine": str(checked.quarantine_path),
                    "failures": checked.reasons,
                },
                indent=2,
            )
        )
        return
    lines = summary_lines(imp, s.data_path, checked)
    lines += [
        f"tracked   data/ with DVC (md5 {md5}); commit data.dvc (and .dvc/config) to record this catalog version",
        "next      lensflow retrain --auto-approve    (trains, indexes, evaluates and promotes; `lensflow status` "
        "after)",
    ]
    typer.echo("\n".join(lines))


# How `lensflow retrain` / `lensflow promote` end, for scripts (documented in the README).
EXIT_CODES = {
    "promoted": 0,
    "failed": 1,
    "usage": 2,
    "rejected": 3,
    "timed-out": 3,
    "superseded": 3,
    "awaiting-approval": 4,
}
GATE_METRIC = re.compile(
    r"(image|text|shopper)_(precision|recall|mrr|ndcg)_at_(1|5|10)|zero_shot_accuracy|"
    r"shopper_category_precision_at_10|index_recall_at_10"
)


def _gate(floors: list[str], tolerance: float | None):
    """GateConfig from --floor METRIC=VALUE (VALUE `none` drops that floor) and --tolerance."""
    from lensflow.tasks.promote import GateConfig

    gate = GateConfig()
    merged = dict(gate.floors)
    for item in floors:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not GATE_METRIC.fullmatch(name):
            _fail(
                f"--floor {item!r}: expected METRIC=VALUE with a metric such as image_precision_at_10 or "
                "text_precision_at_10 (VALUE `none` removes that floor)",
                EXIT_CODES["usage"],
            )
        if value.strip().lower() == "none":
            merged.pop(name, None)
            continue
        try:
            merged[name] = float(value)
        except ValueError:
            _fail(f"--floor {item!r}: {value!r} is not a number", EXIT_CODES["usage"])
    return gate.model_copy(update={"floors": merged} | ({"tolerance": tolerance} if tolerance is not None else {}))


FLOOR_HELP = (
    "an absolute minimum the model must reach, METRIC=VALUE (repeatable; VALUE `none` drops it); added to the "
    "gate's default floors (GateConfig, tasks/promote.py); with no champion yet the floors are the whole gate"
)
TOLERANCE_HELP = "how far a gated metric may fall below the champion's (absolute) [default: GateConfig.tolerance]"


def _approval(approval: str | None, auto_approve: bool) -> str:
    from lensflow.tasks.promote import ReviewPolicy

    if auto_approve and approval not in (None, "auto-approve"):
        _fail(f"--auto-approve contradicts --approval {approval}", EXIT_CODES["usage"])
    approval = "auto-approve" if auto_approve else approval or ReviewPolicy.model_fields["approval"].default
    if approval not in ("reviewer", "auto-approve", "later"):
        _fail(f"--approval must be reviewer, auto-approve or later, not {approval!r}", EXIT_CODES["usage"])
    if approval == "reviewer" and not _prefect_api_url():
        _fail(
            "a reviewer can only approve a run that a Prefect server knows about: start the platform (`make up`) and "
            "trigger the deployment, or set PREFECT_API_URL; otherwise pass --auto-approve or --approval later",
            EXIT_CODES["usage"],
        )
    return approval


def _end(summary: dict) -> None:
    """Exit with the code of the run's outcome, after saying what to do next when nothing was promoted."""
    hint = (summary.get("gate") or {}).get("next_step")
    if summary["outcome"] != "promoted":
        typer.secho(
            hint or f"v{summary['version']}: {summary['outcome']}; the champion did not change", fg="yellow", err=True
        )
    raise typer.Exit(EXIT_CODES.get(summary["outcome"], 1))


@app.command()
def retrain(
    limit: int | None = typer.Option(
        None,
        "--limit",
        help="(re)build the sample catalog with N products first (refused when data/ holds your own catalog)",
    ),
    approval: str | None = typer.Option(
        None,
        "--approval",
        help="reviewer (pause for a reviewer; needs a Prefect server, "
        "see `make up`) | auto-approve | later (stop after the gate; review with the promote flow)",
    ),
    auto_approve: bool = typer.Option(
        False, "--auto-approve", help="same as --approval auto-approve (recorded as auto-approved)"
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="encoder preset (models/configs) or JSON path [default: the retrain flow's]"
    ),
    strategy: str | None = typer.Option(
        None, "--strategy", help="fine-tuning strategy: heads | partial | full [default: the retrain flow's]"
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="maximum epochs (default: the strategy's)"),
    floor: list[str] = typer.Option([], "--floor", help=FLOOR_HELP),
    tolerance: float | None = typer.Option(None, "--tolerance", min=0, help=TOLERANCE_HELP),
    max_bad_fraction: float | None = typer.Option(
        None,
        "--max-bad-fraction",
        min=0,
        max=1,
        help="stop when more catalog rows than this fail validation [default: CatalogPolicy, tasks/validate.py]",
    ),
    json_out: bool = typer.Option(False, "--json", help="print the run summary as JSON (stdout holds only the JSON)"),
) -> None:
    """Run the retrain flow on the catalog in data/.

    Exit code: 0 promoted, 1 failed, 2 usage error, 3 not promoted (rejected by the gate or a reviewer, timed out,
    superseded), 4 waiting for approval (--approval later)."""
    from lensflow.tasks.sample import foreign_files, sample_meta

    s = _settings()
    approval = _approval(approval, auto_approve)
    gate = _gate(floor, tolerance)
    if limit is not None:
        if foreign := foreign_files(s.data_path):
            from lensflow.tasks.sample import describe_files

            _fail(
                f"--limit rebuilds the bundled sample catalog, but {s.data_path} holds files lensflow did not create "
                f"({describe_files(s.data_path, foreign)}); nothing was changed. To train on your catalog, run "
                "`lensflow retrain` without --limit"
            )
        meta = sample_meta(s.data_path)
        if meta is None or meta.get("limit") != limit:
            build_sample(limit, err=json_out)
    from lensflow.flows.retrain import RetrainParams
    from lensflow.flows.retrain import retrain as retrain_flow
    from lensflow.tasks.helpers.catalog import CatalogError
    from lensflow.tasks.lock import RunInProgress
    from lensflow.tasks.validate import ValidationFailed

    chosen = {
        k: v
        for k, v in {
            "preset": preset,
            "strategy": strategy,
            "epochs": epochs,
            "max_bad_fraction": max_bad_fraction,
        }.items()
        if v is not None
    }
    t0 = time.perf_counter()
    try:
        summary = retrain_flow(
            params=RetrainParams(**chosen, approval=approval, gate=gate, progress=sys.stderr.isatty() or not json_out)
        )
    except (CatalogError, ValidationFailed, RunInProgress, ValueError) as exc:
        _fail(str(exc))
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    if json_out:
        typer.echo(redact(json.dumps(summary, indent=2, default=str)))
        _end(summary)
    m = summary["metrics"]
    lines = [
        f"outcome          {summary['outcome']} (model {s.registered_model} v{summary['version']})",
        f"catalog          {summary['catalog_rows']} rows, {summary['quarantined_rows']} quarantined, DVC md5 "
        f"{summary['data_md5']}",
        f"index            {summary['index']['table']} v{summary['index']['version']}, {summary['index']['rows']} "
        "rows, "
        f"ANN {'IVF_PQ' if summary['index']['ann'] else 'none (exact)'}",
        f"image->product   P@10 {m['image_precision_at_10']:.3f}  R@1 {m['image_recall_at_1']:.3f}  MRR@10 "
        f"{m['image_mrr_at_10']:.3f}  nDCG@10 {m['image_ndcg_at_10']:.3f}",
        f"text->product    P@10 {m['text_precision_at_10']:.3f}  R@1 {m['text_recall_at_1']:.3f}  MRR@10 "
        f"{m['text_mrr_at_10']:.3f}  nDCG@10 {m['text_ndcg_at_10']:.3f}",
        *(
            [
                f"shopper photo    R@1 {m['shopper_recall_at_1']:.3f}  R@10 {m['shopper_recall_at_10']:.3f}  MRR@10 "
                f"{m['shopper_mrr_at_10']:.3f}"
                f"  (same product among {summary['catalog_rows']})"
            ]
            if "shopper_recall_at_1" in m
            else []
        ),
        f"zero-shot acc    {m['zero_shot_accuracy']:.3f}"
        + (f"   ANN recall@10 vs exact {m['index_recall_at_10']:.3f}" if "index_recall_at_10" in m else ""),
        "gate             "
        f"{'passed' if summary['gate']['passed'] else 'failed: ' + '; '.join(summary['gate']['reasons'])}",
        *(
            [f"review           {r['outcome']} by {r['reviewer']}: {r['comment']}"]
            if (r := summary["gate"].get("review"))
            else []
        ),
        f"time             {summary['wall_seconds']} s (tower features {summary['feature_seconds']} s, "
        f"{summary['strategy']} training {summary['train_seconds']} s, {summary['epochs_run']} epochs)",
        "stages           " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["stage_seconds"].items()),
    ]
    typer.echo("\n".join(lines))
    _end(summary)


@app.command()
def promote(
    version: int | None = typer.Option(
        None, "--version", min=1, help="the model version (default: the one behind `challenger`)"
    ),
    approval: str | None = typer.Option(
        None, "--approval", help="reviewer (needs a Prefect server) | auto-approve | later"
    ),
    auto_approve: bool = typer.Option(
        False, "--auto-approve", help="same as --approval auto-approve (recorded as auto-approved)"
    ),
    floor: list[str] = typer.Option([], "--floor", help=FLOOR_HELP),
    tolerance: float | None = typer.Option(None, "--tolerance", min=0, help=TOLERANCE_HELP),
    json_out: bool = typer.Option(False, "--json", help="print the outcome as JSON (stdout holds only the JSON)"),
) -> None:
    """Gate a registered version again (e.g. one the gate rejected) and promote it, without retraining.

    Exit code: as `lensflow retrain`."""
    from lensflow.core.champion import IndexMismatch, NoChampion
    from lensflow.flows.promote import PromoteParams
    from lensflow.flows.promote import promote as promote_flow
    from lensflow.tasks.lock import RunInProgress

    _settings()
    params = PromoteParams(version=version, approval=_approval(approval, auto_approve), gate=_gate(floor, tolerance))
    try:
        out = promote_flow(params=params)
    except (NoChampion, IndexMismatch, RunInProgress, ValueError) as exc:
        _fail(str(exc))
    if json_out:
        typer.echo(redact(json.dumps(out, indent=2, default=str)))
    elif out["outcome"] == "promoted":
        typer.echo(f"v{out['version']} is now the champion")
    _end(out)


@app.command()
def reindex(json_out: bool = typer.Option(False, "--json", help="print the run summary as JSON")) -> None:
    """Bring the champion's index up to the catalog in data/ without retraining (only changes are embedded)."""
    from lensflow.core.champion import IndexMismatch, NoChampion
    from lensflow.flows.reindex import ReindexParams
    from lensflow.flows.reindex import reindex as reindex_flow
    from lensflow.tasks.helpers.catalog import CatalogError
    from lensflow.tasks.lock import RunInProgress
    from lensflow.tasks.validate import ValidationFailed

    _settings()
    try:
        out = reindex_flow(params=ReindexParams(progress=sys.stderr.isatty() or not json_out))
    except (NoChampion, IndexMismatch, CatalogError, ValidationFailed, RunInProgress, ValueError) as exc:
        _fail(str(exc))
    if json_out:
        typer.echo(redact(json.dumps(out, indent=2, default=str)))
    elif out["outcome"] == "unchanged":
        typer.echo(f"the index of v{out['model_version']} already reflects data {out['data_md5']}: nothing to do")
    else:
        typer.echo(
            f"v{out['model_version']} now serves {out['table']} ({out['rows']} rows): {out['diff']}, "
            f"{out['embedded']} embedded; {out['reason']}; stages {out['stage_seconds']}"
        )


@app.command()
def status(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The champion, its metrics and index, and whether the index on disk is the recorded one."""
    from lensflow.core.champion import status as champion_status

    st = champion_status(_settings())
    last = st["last_run"]
    if json_out:
        typer.echo(redact(json.dumps(st, indent=2)))
    elif st["champion"] is None:
        typer.echo(redact("; ".join(st["problems"]) if last else "no champion yet: " + "; ".join(st["problems"])))
    else:
        ch = st["champion"]
        typer.echo(f"champion  {ch['name']} v{ch['version']} (data {ch['data_md5']})")
        typer.echo(
            f"index     {ch['index']['table']} v{ch['index']['version']}, {ch['index']['rows']} rows at "
            f"{ch['index']['uri']}"
        )
        typer.echo(
            "metrics   "
            + ", ".join(
                f"{k} {v:.3f}"
                for k, v in sorted(ch["metrics"].items())
                if k.endswith("_at_10") and not k.startswith("heldout_")
            )
        )
        for line in heldout_lines(ch["metrics"]):
            typer.echo(line)
        typer.echo("consistent" if st["consistent"] else redact("INCONSISTENT: " + "; ".join(st["problems"])))
        if last and last["version"] != ch["version"]:
            typer.echo(
                redact(
                    f"last run  v{last['version']} {last['status']}" + (f": {last['reason']}" if last["reason"] else "")
                )
            )
    if not json_out and last and last["next_step"] and last["status"] == "rejected":
        typer.echo(redact(f"next step {last['next_step']}"))
    if st["champion"] is not None and not st["consistent"]:
        raise typer.Exit(2)


def heldout_lines(metrics: dict) -> list[str]:
    """The held-out shopper-photo figures for `status`: combined, each condition's R@1, and the gap."""
    from lensflow.tasks.helpers.report import gap_line
    from lensflow.tasks.robustness import table_of

    table = table_of(metrics)
    if "combined" not in table:
        return [
            "held-out  not measured for this version (registered before the held-out evaluation): run the evaluate flow"
        ]
    c = table.pop("combined")
    return [
        f"held-out  shopper photos, all conditions: R@1 {c['recall_at_1']:.3f}, R@10 {c['recall_at_10']:.3f}, "
        f"category P@10 {c['category_precision_at_10']:.3f}",
        "          R@1 per condition: " + ", ".join(f"{k} {v['recall_at_1']:.2f}" for k, v in table.items()),
        "          " + gap_line(metrics),
    ]


@app.command()
def search(
    text: str | None = typer.Option(None, "--text", help="search by text"),
    image: Path | None = typer.Option(None, "--image", help="search by a photo", exists=True, dir_okay=False),
    k: int = typer.Option(10, "--k", min=1, max=1000),
    category: str | None = typer.Option(None, "--category", help="only this category"),
    box: str | None = typer.Option(
        None,
        "--box",
        help="with --image: search only inside x0,y0,x1,y1 of the upright photo "
        "(relative when every value is <= 1, pixels otherwise)",
    ),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Search the champion's index by text or by photo, once. A photo's product is located and cropped first,
    as the service does.

    Each call imports the model stack, loads the champion's encoder and verifies its index (~10-15 s on 2
    cores) for one query of a few ms: for more than a handful of searches run `lensflow serve` and use its API."""
    from lensflow.serving.search import search as do_search
    from lensflow.serving.served import load_champion

    if (text is None) == (image is None):
        _fail("give exactly one of --text or --image", 2)
    if box is not None and image is None:
        _fail("--box needs --image", 2)
    s = _settings()
    with _champion_errors(image):
        served = load_champion(s)
        limits = (s.max_image_pixels, s.max_image_side)
        results = do_search(
            served,
            text=text,
            image=image,
            k=k,
            category=category,
            box=box,
            limits=limits,
            exact_max_rows=s.exact_search_max_rows,
        )
    if json_out:
        typer.echo(json.dumps(results, indent=2))
        return
    for r in results:
        typer.echo(f"{r['score']:.4f}  {r['product_id']:<14} {r['category']:<12} {r['title']}")


@contextmanager
def _champion_errors(image: Path | None):
    """A one-off use of the champion (search, describe): what the user can fix is one line and exit code 1."""
    from lensflow.core.champion import IndexMismatch, NoChampion

    try:
        yield
    except (NoChampion, IndexMismatch, ValueError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot read {image}: {exc}")


@app.command()
def describe(
    image: Path = typer.Argument(..., help="a photo", exists=True, dir_okay=False),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Describe a photo with the champion: category and confidence, colours, a suggested title and description,
    and the most similar products (what the service's POST /describe returns)."""
    from lensflow.serving.describe import describe_file
    from lensflow.serving.served import load_champion

    s = _settings()
    with _champion_errors(image):
        captioner = None
        if s.caption_model:
            from lensflow.models.caption import Captioner

            captioner = Captioner.load(s.path(s.caption_model))
        out = describe_file(load_champion(s), image, (s.max_image_pixels, s.max_image_side), captioner)
    if json_out:
        typer.echo(json.dumps(out, indent=2))
        return
    top = ", ".join(f"{c['category']} {c['score']:.2f}" for c in out["categories"])
    typer.echo(f"category     {out['category']} (confidence {out['confidence']:.2f}; {top})")
    colours = ", ".join(f"{c['name']} {c['share']:.0%}" for c in out["colours"]) or "-"
    typer.echo(f"colours      {colours}")
    typer.echo(f"title        {out['title']}")
    typer.echo(f"description  {out['description']}")
    typer.echo(f"similar      {' '.join(out['similar'])}")


def _review_api():
    """Point Prefect at PREFECT_API_URL, or at the local platform (`lensflow up`) when it is unset, with the
    platform's credential from .platform/ when this shell has none (`source .platform/env` sets both)."""
    import os

    s = _settings()
    if not _prefect_api_url():
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{s.prefect_port}/api"
        _platform_credential(s)
    return s


@review_app.command("list")
def review_list(json_out: bool = typer.Option(False, "--json", help="print JSON (with the full review pages)")) -> None:
    """Paused runs waiting for a decision, with what they compare."""
    from lensflow.tasks.helpers.approval import pending_reviews

    _review_api()
    try:
        pending = pending_reviews()
    except Exception as exc:  # the API is down or unreachable
        _fail(f"cannot reach the Prefect API at {_prefect_api_url()}: {exc}")
    if json_out:
        typer.echo(json.dumps(pending, indent=2))
    elif not pending:
        typer.echo("nothing is waiting for review")
    for r in [] if json_out else pending:
        typer.echo(f"{r['flow_run_id']}  {r['title']}  (paused {r['paused_at']}, expires {r['expires_at']})")


KEY_FILE_HELP = (
    "your reviewer key (default: $LENSFLOW_REVIEWER_KEY_FILE, else ~/.config/lensflow/reviewer.key; "
    "$LENSFLOW_REVIEWER_KEY may hold the key itself)"
)


def _reviewer_key(key_file: Path | None):
    """The reviewer's private key: --key-file, $LENSFLOW_REVIEWER_KEY, $LENSFLOW_REVIEWER_KEY_FILE, or the default
    file. A key file others can read is refused, as ssh does."""
    import os

    from lensflow.core.signoff import ReviewerKey, SignoffError

    try:
        if key_file is None and os.environ.get("LENSFLOW_REVIEWER_KEY"):
            return ReviewerKey.parse(os.environ["LENSFLOW_REVIEWER_KEY"])
        path = key_file or Path(
            os.environ.get("LENSFLOW_REVIEWER_KEY_FILE") or Path.home() / ".config/lensflow/reviewer.key"
        )
        if not path.exists():
            _fail(
                f"no reviewer key at {path}: the platform admin runs `lensflow reviewers add YOUR_NAME` and gives you "
                "the key it shows once; save it there (chmod 600) or pass --key-file"
            )
        if path.stat().st_mode & 0o077:
            _fail(f"{path} is readable by other users: `chmod 600 {path}`, then try again")
        return ReviewerKey.load(path)
    except SignoffError as exc:
        _fail(f"reviewer key: {exc}")


def _code(flow_run_id: str, decision: str, key_file: Path | None) -> tuple[str, str]:
    """(reviewer name, the one-run code) for this paused run, signed locally with the reviewer's key."""
    from lensflow.tasks.helpers.approval import review_code

    key = _reviewer_key(key_file)
    _review_api()
    try:
        return key.name, review_code(key, flow_run_id, decision)
    except LookupError as exc:
        _fail(str(exc))
    except Exception as exc:  # the API is down, unreachable, or refuses our credential
        _fail(f"cannot read flow run {flow_run_id} from the Prefect API at {_prefect_api_url()}: {exc}")


def _answer(flow_run_id: str, decision: str, comment: str, key_file: Path | None) -> None:
    from prefect.exceptions import FlowPauseTimeout, NotPausedError, PrefectHTTPStatusError

    from lensflow.tasks.helpers.approval import answer_review

    name, code = _code(flow_run_id, decision, key_file)
    try:
        answer_review(flow_run_id, decision, name, comment, code)
    except (NotPausedError, FlowPauseTimeout) as exc:
        _fail(f"flow run {flow_run_id} cannot take a decision: {exc}")
    except PrefectHTTPStatusError as exc:
        _fail(f"flow run {flow_run_id}: {exc.response.status_code} {exc.response.text[:300]}")
    typer.echo(
        f"{decision} sent to flow run {flow_run_id} as {name}, signed with your key; the run verifies it before "
        "changing anything (`lensflow status` shows the outcome)"
    )


@review_app.command("code")
def review_code_cmd(
    flow_run_id: str = typer.Argument(..., help="the paused flow run (see `lensflow review list`)"),
    reject: bool = typer.Option(False, "--reject", help="a code for rejecting (default: for approving)"),
    key_file: Path = typer.Option(None, "--key-file", help=KEY_FILE_HELP),
) -> None:
    """Print a one-run code to paste into the approval form in the Prefect UI (with your name and decision).

    It is signed on this machine with your key, and is good for this run, its version and this decision only,
    for LENSFLOW_REVIEW_CODE_TTL_S (15 minutes by default)."""
    name, code = _code(flow_run_id, "reject" if reject else "approve", key_file)
    typer.secho(f"code for {name}, {'reject' if reject else 'approve'}, flow run {flow_run_id}:", err=True)
    typer.echo(code)


@review_app.command("approve")
def review_approve(
    flow_run_id: str = typer.Argument(..., help="the paused flow run (see `lensflow review list`)"),
    comment: str = typer.Option("", "--comment", "-m", help="why; recorded on the model version"),
    key_file: Path = typer.Option(None, "--key-file", help=KEY_FILE_HELP),
) -> None:
    """Approve, signed with your key: the run moves `champion` to its version (if its gate still holds)."""
    _answer(flow_run_id, "approve", comment, key_file)


@review_app.command("reject")
def review_reject(
    flow_run_id: str = typer.Argument(..., help="the paused flow run (see `lensflow review list`)"),
    comment: str = typer.Option("", "--comment", "-m", help="why; recorded on the model version"),
    key_file: Path = typer.Option(None, "--key-file", help=KEY_FILE_HELP),
) -> None:
    """Reject, signed with your key: the champion stays; the version is marked rejected with your reason."""
    _answer(flow_run_id, "reject", comment, key_file)


def _fresh_key_file(path: Path) -> None:
    """Refuse before anything is registered or made: a key file is never overwritten."""
    if path.exists():
        _fail(f"{path} exists: lensflow does not overwrite it; choose another --key-file")


def _store():
    return _settings().reviewer_store()


@reviewers_app.command("add")
def reviewers_add(
    name: str = typer.Argument(..., help="the reviewer's name, as recorded on approvals"),
    key_file: Path = typer.Option(
        None, "--key-file", help="write the new key to this file (0600) instead of showing it; never overwrites"
    ),
    public_key: str = typer.Option(
        None, "--public-key", help="register a key the reviewer made with `lensflow reviewers keygen` (lfpk1...)"
    ),
    rotate: bool = typer.Option(False, "--rotate", help="replace NAME's key (the old key stops working)"),
) -> None:
    """Register a reviewer. Without --public-key, make their key and show it once: lensflow keeps only the
    public half, so it cannot be shown again (`--rotate` makes a new one)."""
    from lensflow.core.signoff import ReviewerKey, SignoffError, check_name

    store = _store()
    try:
        if public_key:
            if public_key.split(".")[1:2] != [check_name(name)]:
                _fail(f"that public key is not for {name!r}")
            store.add(public_key, replace=rotate)
            typer.echo(f"reviewer {name} registered with their own key ({store.path})")
            return
        key = ReviewerKey.generate(name)
        if key_file is not None:
            _fresh_key_file(key_file)
        store.add(key.public_text(), replace=rotate)
    except SignoffError as exc:
        _fail(str(exc))
    if key_file is not None:
        key.save(key_file)
        typer.echo(f"reviewer {key.name} registered; their key is in {key_file} (0600): give it to them privately")
        return
    typer.echo(f"reviewer {key.name} registered ({store.path} keeps only the public half).", err=True)
    typer.echo(
        "Their key, shown this once: give it to them privately; they save it as ~/.config/lensflow/reviewer.key "
        "(chmod 600):",
        err=True,
    )
    typer.echo(key.text())


@reviewers_app.command("keygen")
def reviewers_keygen(
    name: str = typer.Argument(..., help="your name, as the platform admin will register it"),
    key_file: Path = typer.Option(
        Path.home() / ".config/lensflow/reviewer.key", "--key-file", help="where to keep your key (0600)"
    ),
) -> None:
    """Make your own reviewer key on your machine; print the public half for the admin's
    `lensflow reviewers add NAME --public-key ...` (the admin never sees your key)."""
    from lensflow.core.signoff import ReviewerKey, SignoffError

    _fresh_key_file(key_file)
    try:
        key = ReviewerKey.generate(name)
    except SignoffError as exc:
        _fail(str(exc))
    key.save(key_file)
    typer.echo(f"your key is in {key_file} (0600). Give the admin this public key:", err=True)
    typer.echo(key.public_text())


@reviewers_app.command("remove")
def reviewers_remove(name: str = typer.Argument(..., help="the reviewer to remove")) -> None:
    """Remove a reviewer: their key is refused from now on, by runs already waiting too."""
    from lensflow.core.signoff import SignoffError

    try:
        _store().remove(name)
    except SignoffError as exc:
        _fail(str(exc))
    typer.echo(f"reviewer {name} removed; their key no longer approves or rejects anything")


@reviewers_app.command("list")
def reviewers_list(json_out: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """The registered reviewers (who may approve or reject a promotion)."""
    reviewers = _store().load()
    if json_out:
        typer.echo(json.dumps({n: {"added_at": r.get("added_at")} for n, r in sorted(reviewers.items())}, indent=2))
        return
    if not reviewers:
        typer.echo("no reviewers registered: `lensflow reviewers add NAME`")
    for name, r in sorted(reviewers.items()):
        typer.echo(f"{name}  (added {r.get('added_at', '?')})")


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="bind address (default LENSFLOW_SERVE_HOST, 127.0.0.1)"),
    port: int | None = typer.Option(None, "--port", help="port (default LENSFLOW_SERVE_PORT, 8000)"),
    poll: float | None = typer.Option(None, "--poll", help="seconds between checks of the champion alias"),
    log_format: str | None = typer.Option(
        None, "--log-format", help="json (one object per line) or text (default LENSFLOW_LOG_FORMAT, json)"
    ),
) -> None:
    """Serve the search API and page for the champion; swaps to a new champion without a restart."""
    import uvicorn

    from lensflow.serving import logs
    from lensflow.serving.app import create_app

    s = _settings()
    update = {"swap_poll_s": poll} if poll is not None else {}
    if log_format is not None:
        if log_format not in ("json", "text"):
            _fail(f"--log-format must be json or text, not {log_format!r}")
        update["log_format"] = log_format
    s = s.model_copy(update=update)
    cfg = logs.configure(s.log_format)
    host, port = host or s.serve_host, port or s.serve_port
    typer.echo(f"lensflow search on http://{host}:{port} (API docs at /docs)")
    uvicorn.run(create_app(s), host=host, port=port, log_config=cfg, access_log=False)


@app.command()
def up(no_mlflow: bool = typer.Option(False, "--no-mlflow", help="do not start the MLflow UI")) -> None:
    """Start the local platform on 127.0.0.1: Prefect server, work pool + worker, deployments, MLflow UI."""
    from lensflow.platform import Platform, PlatformError

    try:
        Platform(_settings()).up(mlflow=not no_mlflow, log=typer.echo)
    except PlatformError as exc:
        _fail(str(exc))


@app.command()
def down() -> None:
    """Stop what `lensflow up` started (workers first, then the servers)."""
    from lensflow.platform import Platform

    Platform(_settings()).down(log=typer.echo)


def main() -> None:
    """The console entry point: log records and unexpected tracebacks are printed without credentials."""
    install_log_redaction()
    try:
        app()
    except Exception as exc:
        sys.stderr.write(format_exception(exc) + "\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
