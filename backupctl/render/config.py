"""The backup configuration, and what configure and reset do, as text."""

from __future__ import annotations

from backupctl.records import Configuration, Overview
from backupctl.render import text as fmt
from backupctl.render.text import path_lines


def describe_config(config: Configuration) -> str:
    repository = config.repository
    pairs = [
        ("Repository", repository or "not configured"),
        ("Passphrase", "set" if config.passphrase_set else "not set"),
        ("Sources", path_lines(config.sources)),
        ("Exclude", path_lines(config.exclude)),
        ("Schedule", config.schedule),
        ("Keep", ", ".join(f"{rule} {count}" for rule, count in config.keep.items()) or "none"),
        ("Encryption", config.encryption),
        ("Compression", config.compression),
        ("Append-only", "yes" if config.append_only else "no"),
        ("Upload cap", describe_upload_limit(config.upload_limit)),
    ]
    text = fmt.fields(pairs)
    if repository is None:
        text = "Backups are not configured; a configure starts from these defaults:\n" + text
    return text


def describe_configured(overview: Overview, config: Configuration) -> str:
    if not config.sources:
        return ("Nothing will be backed up: no folders are configured. Restores work; name the folders "
                "with `backupctl change --source PATH` to take snapshots.")
    folders = fmt.plural(len(config.sources), "folder")
    if overview.automatic:
        return f"Backups are configured: {folders}, automatic snapshots {config.schedule}."
    return f"Backups are configured: {folders}, snapshots only when asked for (backupctl snapshot)."


def describe_upload_limit(limit: int | None) -> str:
    if limit is None:
        return "the operator's setting"
    return f"{limit:,} KiB/s" if limit else "none"


def describe_reset(repository: str | None, mirror_location: str | None = None) -> str:
    where = f" at {repository}" if repository else ""
    lines = [
        "Reset returns backups on this box to the defaults:",
        "  - the configuration goes back to the defaults and automatic backups stop;",
        "  - these secrets are erased from this box: the repository's passphrase, the SSH key",
        "    the daemon made for SSH servers, and the off-site bucket's access keys;",
        "  - borg's local cache is erased.",
        f"The repository{where} and its snapshots are NOT deleted: configuring",
        "the same location with the same passphrase connects to them again.",
    ]
    if mirror_location:
        lines.append(f"The off-site copy at {mirror_location} is NOT deleted either.")
    lines.append("Keep the passphrase somewhere safe: without it no snapshot can be read.")
    return "\n".join(lines)
