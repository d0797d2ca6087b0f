"""``ablate export``: one study's trials, a row each with every figure, as files."""

from __future__ import annotations

import click

from ablate.cli import main
from ablate.cli.options import db_option
from ablate.cli.report import where_option


@main.command("export")
@click.argument("study")
@db_option
@where_option
@click.option("--csv", "csv_path", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write CSV here ('-': standard output).")
@click.option("--parquet", "parquet_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write Parquet here (needs pyarrow).")
@click.option("--markdown", "markdown_path", metavar="FILE",
              type=click.Path(dir_okay=False, allow_dash=True),
              help="Write a Markdown table here ('-': standard output).")
def export(study: str, db: str | None, where: tuple[str, ...], csv_path: str | None,
           parquet_path: str | None, markdown_path: str | None) -> None:
    """Write STUDY's trials, one row each with all figures, to CSV, Parquet or Markdown.

    Columns: the trial (id, name, configuration, variant, seed, status), params,
    GFLOPs and their convention, resolution, latency, mIoU and pixel accuracy (%),
    every other final figure, per-class IoU (%, iou/<class>), the recipe's axes
    (axis:<key>) and published figures (published_<key>).

    \b
    Example:
        ablate export mnv3_expansion --csv results/mnv3.csv
        ablate export quickstart --parquet trials.parquet --markdown trials.md
        ablate export quickstart --where model.head=deeplabv3 --csv -
    """
    from ablate.report import export as exporter  # lazy: loads numpy, pandas, sqlalchemy
    from ablate.store import Store  # lazy: loads sqlalchemy

    if not (csv_path or parquet_path or markdown_path):
        raise click.UsageError("give at least one of --csv FILE, --parquet FILE, --markdown FILE")
    frame = exporter.export_frame(Store(db, must_exist=True), study, where)
    written = []
    if parquet_path:
        exporter.write_parquet(frame, parquet_path)
        written.append(parquet_path)
    for path, text in ((csv_path, lambda: frame.to_csv(index=False)),
                       (markdown_path, lambda: exporter.to_markdown_text(frame, study))):
        if path == "-":
            click.echo(text(), nl=False)
        elif path:
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(text())
            written.append(path)
    for path in written:
        click.echo(f"wrote {path} ({len(frame)} trials)", err=csv_path == "-" or markdown_path == "-")
