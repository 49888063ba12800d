"""`python -m bench [--smoke | --quick | --large | --scale] [--pairs N] [--scale-files N --scale-archives N --scale-jobs N] [--seed N] [--json FILE] [--markdown FILE]`:
measure, print the figures as Markdown, exit 0."""

from __future__ import annotations

import sys

from bench import scale_report
from bench.options import parse_options
from bench.report import render, write_json, write_markdown
from bench.run import run_bench
from bench.scale import run_scale
from bench.workspace import temporary_workspace


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    if options.scale is not None:
        with temporary_workspace() as workspace:
            scale = run_scale(options, workspace)
        print(scale_report.render(scale))
        if options.json_path is not None:
            scale_report.write_json(options.json_path, scale)
        if options.markdown_path is not None:
            scale_report.write_markdown(options.markdown_path, scale)
        return 0
    with temporary_workspace() as workspace:
        figures = run_bench(options, workspace)
    print(render(figures))
    if options.json_path is not None:
        write_json(options.json_path, figures)
    if options.markdown_path is not None:
        write_markdown(options.markdown_path, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
