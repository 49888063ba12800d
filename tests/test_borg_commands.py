import pytest

from backupd.borg import commands
from backupd.borg.commands import BorgCommand
from backupd.capabilities import Capability

REPOSITORY_ACCESS = frozenset({Capability.DAC_OVERRIDE})


def test_init() -> None:
    assert commands.init("/srv/repo", "repokey-blake2") == BorgCommand(
        ("init", "--encryption=repokey-blake2", "--log-json", "--", "/srv/repo"),
        json_output=False,
        repository="/srv/repo",
        capabilities=REPOSITORY_ACCESS,
    )


def test_init_unencrypted_remote() -> None:
    command = commands.init("ssh://backup@host:22/./repo", "none")
    assert command.args == ("init", "--encryption=none", "--log-json", "--", "ssh://backup@host:22/./repo")


def test_create() -> None:
    command = commands.create(
        "/srv/repo",
        "box-2024-05-01T10:00:00",
        ["/home", "/etc"],
        exclude=["*.tmp", "/home/*/.cache"],
        compression="zstd,3",
    )
    assert command == BorgCommand(
        (
            "create",
            "--log-json",
            "--progress",
            "--json",
            "--compression=zstd,3",
            "--exclude=*.tmp",
            "--exclude=/home/*/.cache",
            "--",
            "/srv/repo::box-2024-05-01T10:00:00",
            "/home",
            "/etc",
        ),
        json_output=True,
        repository="/srv/repo",
        capabilities=REPOSITORY_ACCESS | {Capability.DAC_READ_SEARCH},
    )


def test_create_defaults_to_lz4_without_excludes() -> None:
    assert commands.create("/r", "a", ["/data"]).args == (
        "create", "--log-json", "--progress", "--json", "--compression=lz4", "--", "/r::a", "/data",
    )


def test_create_with_an_upload_limit() -> None:
    assert commands.create("/r", "a", ["/data"], upload_limit=512).args[4:6] == (
        "--compression=lz4", "--upload-ratelimit=512")
    with pytest.raises(ValueError):
        commands.create("/r", "a", ["/data"], upload_limit=-1)


def test_create_keeps_option_like_sources_and_patterns_positional_or_attached() -> None:
    command = commands.create("/r", "a", ["-rf", "--help"], exclude=["-x"])
    assert command.args[-5:] == ("--exclude=-x", "--", "/r::a", "-rf", "--help")


def test_list_archives() -> None:
    assert commands.list_archives("/srv/repo") == BorgCommand(
        ("list", "--log-json", "--json", "--", "/srv/repo"), json_output=True, repository="/srv/repo",
        capabilities=REPOSITORY_ACCESS,
    )


def test_list_archives_with_checkpoints() -> None:
    assert commands.list_archives("/srv/repo", checkpoints=True).args == (
        "list", "--log-json", "--json", "--consider-checkpoints", "--", "/srv/repo",
    )


def test_info_latest() -> None:
    assert commands.info_latest("/srv/repo") == BorgCommand(
        ("info", "--log-json", "--json", "--last=1", "--", "/srv/repo"), json_output=True, repository="/srv/repo",
        capabilities=REPOSITORY_ACCESS,
    )


def test_placeholders_in_repository_and_archive_are_escaped() -> None:
    command = commands.create("/srv/{hostname}", "snap-{now}", ["/data"])
    assert "/srv/{{hostname}}::snap-{{now}}" in command.args
    assert command.repository == "/srv/{hostname}"
    assert commands.init("/srv/{x}", "none").args[-1] == "/srv/{{x}}"


@pytest.mark.parametrize(
    "build",
    [
        lambda value: commands.init(value, "none"),
        lambda value: commands.create(value, "archive", ["/data"]),
        lambda value: commands.list_archives(value),
        lambda value: commands.info_latest(value),
    ],
    ids=["init", "create", "list_archives", "info_latest"],
)
@pytest.mark.parametrize("repository", ["", "-x", "--remote-path=/bin/sh", "/r::a"])
def test_rejects_bad_repository(build, repository: str) -> None:
    with pytest.raises(ValueError):
        build(repository)


@pytest.mark.parametrize("archive", ["", "-x", "--checkpoint-interval=1", "a/b", "a::b"])
def test_create_rejects_bad_archive(archive: str) -> None:
    with pytest.raises(ValueError):
        commands.create("/r", archive, ["/data"])


@pytest.mark.parametrize("sources", [[], "/data", [""]])
def test_create_rejects_bad_sources(sources) -> None:
    with pytest.raises(ValueError):
        commands.create("/r", "a", sources)


def test_create_rejects_a_single_exclude_string() -> None:
    with pytest.raises(ValueError):
        commands.create("/r", "a", ["/data"], exclude="*.tmp")


@pytest.mark.parametrize("build", [lambda: commands.init("/r", ""), lambda: commands.create("/r", "a", ["/d"], compression="")])
def test_rejects_empty_option_values(build) -> None:
    with pytest.raises(ValueError):
        build()


@pytest.mark.parametrize("options", [{"compression": "zstd,99"}, {"compression": "lz4\n"}, {"exclude": ["re:("]},
                                     {"exclude": ["xx:cache"]}])
def test_create_refuses_values_borg_would_refuse(options) -> None:
    with pytest.raises(ValueError):
        commands.create("/r", "a", ["/d"], **options)


def test_commands_are_immutable() -> None:
    command = commands.info_latest("/r")
    with pytest.raises(AttributeError):
        command.args = ()  # type: ignore[misc]


def test_create_with_timestamp() -> None:
    assert commands.create("/r", "a", ["/data"], timestamp="2024-05-01T10:00:00").args == (
        "create", "--log-json", "--progress", "--json", "--compression=lz4",
        "--timestamp=2024-05-01T10:00:00", "--", "/r::a", "/data",
    )


@pytest.mark.parametrize("timestamp", ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00+00:00"])
def test_create_accepts_explicit_utc_timestamps(timestamp: str) -> None:
    assert f"--timestamp={timestamp}" in commands.create("/r", "a", ["/data"], timestamp=timestamp).args


@pytest.mark.parametrize(
    "timestamp", ["", "-x", "/etc/passwd", "2024-05-01", "2024-05-01T10:00:00+02:00", "2024-05-01 10:00:00", "now"]
)
def test_create_rejects_timestamps_borg_would_not_read_as_utc(timestamp: str) -> None:
    with pytest.raises(ValueError):
        commands.create("/r", "a", ["/data"], timestamp=timestamp)


def test_prune() -> None:
    keep = {"yearly": 1, "monthly": 6, "weekly": 0, "daily": 7, "hourly": 24}
    assert commands.prune("/srv/repo", "box-[0-9]*", keep) == BorgCommand(
        (
            "prune",
            "--log-json",
            "--list",
            "--glob-archives=box-[0-9]*",
            "--keep-hourly=24",
            "--keep-daily=7",
            "--keep-monthly=6",
            "--keep-yearly=1",
            "--",
            "/srv/repo",
        ),
        json_output=False,
        repository="/srv/repo",
        capabilities=REPOSITORY_ACCESS,
    )


def test_prune_dry_run() -> None:
    assert commands.prune("/r", "box-*", {"daily": 3}, dry_run=True).args == (
        "prune", "--log-json", "--list", "--dry-run", "--glob-archives=box-*", "--keep-daily=3", "--", "/r",
    )


def test_prune_pattern_and_repository_reach_borg_without_placeholders() -> None:
    args = commands.prune("/srv/{hostname}", "a[*]{now}-*", {"daily": 1}).args
    assert "--glob-archives=a[*]{{now}}-*" in args
    assert args[-1] == "/srv/{{hostname}}"


@pytest.mark.parametrize(
    "keep",
    [{}, {"daily": 0, "weekly": 0}, {"daily": -1}, {"daily": 3, "within": 2}, {"daily": True}, {"daily": "7"}],
    ids=["empty", "all-zero", "negative", "unknown-rule", "bool", "text"],
)
def test_prune_rejects_bad_keep_rules(keep) -> None:
    with pytest.raises(ValueError):
        commands.prune("/r", "box-*", keep)


@pytest.mark.parametrize("pattern", ["", "*", "**", "box-\n*", "box-\0"])
def test_prune_and_delete_refuse_a_pattern_for_every_archive_or_a_broken_one(pattern: str) -> None:
    with pytest.raises(ValueError):
        commands.prune("/r", pattern, {"daily": 7})
    with pytest.raises(ValueError):
        commands.delete_archives("/r", pattern)


def test_delete_archives_always_names_a_pattern() -> None:
    assert commands.delete_archives("/srv/repo", "box-*.checkpoint*") == BorgCommand(
        ("delete", "--log-json", "--glob-archives=box-*.checkpoint*", "--", "/srv/repo"),
        json_output=False, repository="/srv/repo", capabilities=REPOSITORY_ACCESS,
    )


def test_compact() -> None:
    assert commands.compact("/srv/repo") == BorgCommand(
        ("compact", "--log-json", "--progress", "--", "/srv/repo"), json_output=False, repository="/srv/repo",
        capabilities=REPOSITORY_ACCESS,
    )


def test_check() -> None:
    assert commands.check("/srv/repo") == BorgCommand(
        ("check", "--log-json", "--progress", "--", "/srv/repo"), json_output=False, repository="/srv/repo",
        capabilities=REPOSITORY_ACCESS,
    )
    assert "--repair" not in commands.check("/srv/repo").args


@pytest.mark.parametrize(
    "build",
    [
        lambda value: commands.prune(value, "box-*", {"daily": 1}),
        lambda value: commands.delete_archives(value, "box-*"),
        lambda value: commands.compact(value),
        lambda value: commands.check(value),
    ],
    ids=["prune", "delete", "compact", "check"],
)
@pytest.mark.parametrize("repository", ["", "-x", "--remote-path=/bin/sh", "/r::a"])
def test_maintenance_commands_reject_bad_repository(build, repository: str) -> None:
    with pytest.raises(ValueError):
        build(repository)


def test_archive_item_commands():
    from backupd.borg import commands

    assert commands.info_archive("/r", "a").args == ("info", "--log-json", "--json", "--", "/r::a")
    assert commands.extract("/r", "a", ["srv/data", "etc/x"]).args == (
        "extract", "--log-json", "--list", "--sparse", "--", "/r::a", "srv/data", "etc/x")
    assert commands.key_export("/r").args == ("key", "export", "--log-json", "--", "/r")
    for bad in (["/abs"], [""], "srv"):
        with pytest.raises(ValueError):
            commands.extract("/r", "a", bad)


RESTORING = frozenset({
    Capability.CHOWN, Capability.DAC_OVERRIDE, Capability.DAC_READ_SEARCH, Capability.FOWNER,
    Capability.FSETID, Capability.MKNOD, Capability.SETFCAP,
})
REPOSITORY_ONLY = [
    lambda repository: commands.init(repository, "repokey-blake2"),
    lambda repository: commands.list_archives(repository, checkpoints=True),
    lambda repository: commands.info_latest(repository),
    lambda repository: commands.info_archive(repository, "a"),
    lambda repository: commands.list_tree(repository, "a"),
    lambda repository: commands.key_export(repository),
    lambda repository: commands.prune(repository, "box-*", {"daily": 1}),
    lambda repository: commands.delete_archives(repository, "box-*"),
    lambda repository: commands.compact(repository),
    lambda repository: commands.check(repository),
]


@pytest.mark.parametrize("build", REPOSITORY_ONLY)
def test_commands_that_only_use_the_repository_keep_only_what_a_local_one_needs(build) -> None:
    assert build("/media/disk/repo").capabilities == {Capability.DAC_OVERRIDE}
    assert build("file:///media/disk/repo").capabilities == {Capability.DAC_OVERRIDE}
    assert build("ssh://backup@host:2222/./repo").capabilities == frozenset()
    assert build("backup@host:repo").capabilities == frozenset()


def test_create_keeps_reading_everything_and_extract_keeps_what_restoring_needs() -> None:
    assert commands.create("ssh://b@host/./r", "a", ["/srv"]).capabilities == {Capability.DAC_READ_SEARCH}
    assert commands.create("/r", "a", ["/srv"]).capabilities == {Capability.DAC_READ_SEARCH, Capability.DAC_OVERRIDE}
    assert commands.extract("ssh://b@host/./r", "a").capabilities == RESTORING
    assert commands.extract("/r", "a", ["srv"]).capabilities == RESTORING


def test_list_tree_names_exact_paths_only_and_reads_names_exactly() -> None:
    whole = commands.list_tree("/r", "a{b}")
    assert whole.args[-2:] == ("--", "/r::a{{b}}") and whole.output_encoding == "utf-7"
    one = commands.list_tree("/r", "a", ["srv/notes/todo.txt"])
    assert one.args[3:5] == ("--pattern=+pf:srv/notes/todo.txt", "--pattern=-sh:**")
    with pytest.raises(ValueError):
        commands.list_tree("/r", "a", ["/absolute"])


def test_diff_archives_takes_two_literal_names() -> None:
    assert commands.diff_archives("/r", "old", "new{x}").args == (
        "diff", "--log-json", "--json-lines", "--", "/r::old", "new{{x}}")
