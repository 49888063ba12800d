"""`python -m bench [--smoke | --quick | --large] [--pairs N] [--seed N] [--json FILE] [--markdown FILE]`:
measure, print the figures as Markdown, exit 0."""

from __future__ import annotations

import sys

from bench.options import parse_options
from bench.report import render, write_json, write_markdown
from bench.run import run_bench
from bench.workspace import temporary_workspace


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
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
