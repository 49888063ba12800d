from backupd.borg.prune_list import PruneVerdict, parse_prune_line


def test_prune_list_lines_in_every_form_borg_writes() -> None:
    def line(verdict: str, name: str) -> str:
        # borg: f"{verdict:<44} {name:<36} {time} [{id}]"
        return f"{verdict:<44} {name:<36} Sun, 2024-05-05 10:00:00 [{'46f9d3d9' * 8}]"

    lines = {
        line("Keeping archive (rule: daily #1):", "box-2024-05-05T10:00Z"): ("keep", "box-2024-05-05T10:00Z"),
        line("Keeping archive (rule: monthly[oldest] #3):", "box-a"): ("keep", "box-a"),
        line("Keeping checkpoint archive:", "box-b.checkpoint"): ("keep", "box-b.checkpoint"),
        line("Would prune:", "box-c"): ("prune", "box-c"),
        line("Pruning archive (12/40):", "box-d"): ("prune", "box-d"),
        line("Would prune:", "a name longer than thirty-six characters"): (
            "prune",
            "a name longer than thirty-six characters",
        ),
    }
    for text, (action, name) in lines.items():
        assert parse_prune_line(text) == PruneVerdict(action, name), text  # type: ignore[arg-type]
    for other in ("", "Repository contains 5 archives", "Keeping 3 archives", "Deleting: box-e"):
        assert parse_prune_line(other) is None
