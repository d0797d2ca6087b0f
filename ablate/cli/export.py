"""``ablate export``: one study's trials, a row each with every figure, as files."""

from __future__ import annotations

import os

import click

from ablate import extras
from ablate.cli import main
from ablate.cli.options import db_option
from ablate.cli.report import where_option
from ablate.errors import UserInputError


@main.command("export")
@click.argument("study")
@db_option
@where_option
@click.option("--csv", "csv_path", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write CSV here, replacing the file whole ('-': standard output).")
@click.option("--parquet", "parquet_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write Parquet here (needs pyarrow; binary, so never '-').")
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

    Every target is checked before any work: never the database (or its -wal, -shm,
    -journal files), one file per format, its folder there and writable. A file is
    written whole or not at all (a temporary file beside it, then renamed).

    \b
    Example:
        ablate export mnv3_expansion --csv results/mnv3.csv
        ablate export quickstart --parquet trials.parquet --markdown trials.md
        ablate export quickstart --where model.keep_last_expansion=false --csv -
    """
    from ablate.report import export as exporter  # lazy: loads numpy, pandas, sqlalchemy
    from ablate.report import outputs, render  # lazy: loads sqlalchemy, numpy, pandas
    from ablate.store import Store  # lazy: loads sqlalchemy
    from ablate.store.store import resolve_url  # lazy: loads sqlalchemy

    targets = {"--parquet": parquet_path, "--csv": csv_path, "--markdown": markdown_path}
    targets = {option: path for option, path in targets.items() if path}
    if not targets:
        raise click.UsageError("give at least one of --csv FILE, --parquet FILE, --markdown FILE")
    _check_targets(targets, outputs.database_files(resolve_url(db)))
    if parquet_path and extras.missing("parquet"):  # before any work
        raise UserInputError(extras.needs("--parquet", "parquet"))
    from ablate.report.tables import filter_rows, parse_where, unmatched  # lazy: loads pandas

    conditions = parse_where(where)
    every = exporter.export_frame(Store(db, must_exist=True), study, prefix="STUDY: ")
    frame = render.shown_lists(filter_rows(every, conditions))  # [a,b], as the names spell it
    to_stdout = "-" in targets.values()
    # a value no trial holds (a typo) is told apart from one whose trials are not done
    hint = "".join(f"; {line}" for line in unmatched(every, conditions)) if frame.empty else ""
    texts = {"--csv": lambda: render.to_csv(frame),
             "--markdown": lambda: exporter.to_markdown_text(frame, study)}
    for option, path in targets.items():
        if path == "-":
            click.echo(texts[option](), nl=False)
            continue
        try:
            if option == "--parquet":
                exporter.write_parquet(frame, path)
            else:
                outputs.write_text(path, texts[option](), newline="")
        except OSError as err:  # the disk filled up, say: the old file (or none) stays
            raise UserInputError(f"{option} {path}: cannot write: {outputs.reason(err)} "
                                 f"({path} left as it was)") from None
        click.echo(f"wrote {path} ({len(frame)} trial{'s' * (len(frame) != 1)}{hint})",
                   err=to_stdout)


def _check_targets(targets: dict[str, str], database: list[str]) -> None:
    """Before any work: no target is the database, standard output takes text only, no
    two formats go to one file, and every file can be written."""
    from ablate.report import outputs  # lazy: loads sqlalchemy

    if targets.get("--parquet") == "-":
        raise UserInputError("--parquet -: Parquet is binary and never goes to standard "
                             "output; give a FILE (--csv - and --markdown - print text)")
    seen: dict[str, str] = {}
    for option, path in targets.items():
        key = path if path == "-" else os.path.realpath(path)
        if key in seen:
            where, fix = (("standard output", "give one of them a FILE") if path == "-" else
                          (path, "give each its own FILE"))
            raise UserInputError(f"{seen[key]} and {option} both write to {where}; {fix} "
                                 "(nothing was written)")
        seen[key] = option
        if path != "-":
            outputs.check_file(option, path, database)
