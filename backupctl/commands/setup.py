"""configure, change, config, reset, export-key and ssh-key."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from backupctl.client import Client
from backupctl.invocation import EXIT_ERROR, EXIT_OK, Invocation, UsageError
from backupctl.private_file import write_new_private_file
from backupctl.protocol import ErrorCode, RpcError
from backupctl.records import Configuration, ConfigureResult, ExportedKey, Overview, SshKey
from backupctl.render import text as fmt
from backupctl.render.config import describe_config, describe_configured, describe_reset
from backupctl.render.text import to_json
from backupctl.terminal import PASSPHRASE_VARIABLE, ask_passphrase, confirmed, prompt_passphrase, read_passphrase


def run_configure(invocation: Invocation) -> int:
    args = invocation.args
    params: dict[str, Any] = {"repository": repository_location(args.repository), **setting_params(args)}
    for option in ("encryption", "host_key"):
        value = getattr(args, option)
        if value is not None:
            params[option] = value
    answer = configure_with_passphrase(invocation.client, params, args.passphrase_file)
    result = ConfigureResult.from_wire(answer)
    for warning in result.warnings or ():
        invocation.warn(f"warning: {warning}")
    if invocation.as_json:
        invocation.emit_json(answer)
        return EXIT_OK
    count = fmt.plural(result.snapshot_count, "snapshot")
    if result.created:
        invocation.say(f"Created a new repository at {params['repository']} ({count}).")
    else:
        invocation.say(f"Connected to the existing repository at {params['repository']} ({count}).")
    overview = Overview.from_wire(invocation.client.call("status"))
    invocation.say(describe_configured(overview, Configuration.from_wire(invocation.client.call("config"))))
    return EXIT_OK


def configure_with_passphrase(client: Client, params: dict[str, Any], passphrase_file: str | None) -> Any:
    """Configure; a passphrase typed at a prompt is asked once to connect, and again only to create."""
    if passphrase_file is not None or os.environ.get(PASSPHRASE_VARIABLE) or not sys.stdin.isatty():
        return client.call("configure", {**params, "passphrase": read_passphrase(passphrase_file)})
    passphrase = prompt_passphrase(repeat=False)
    try:
        return client.call("configure", {**params, "passphrase": passphrase, "create": False})
    except RpcError as error:
        if error.code != ErrorCode.REPOSITORY_NOT_FOUND:
            raise
    print(f"There is no repository at {params['repository']} yet: a new one will be created.", file=sys.stderr)
    if ask_passphrase("Repeat the passphrase: ") != passphrase:
        raise UsageError("the passphrases do not match")
    return client.call("configure", {**params, "passphrase": passphrase})


def setting_params(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line of configure or change."""
    params: dict[str, Any] = {}
    if args.sources:
        params["sources"] = [os.path.abspath(source) for source in args.sources]
    if args.exclude:
        params["exclude"] = list(args.exclude)
    if args.keep:
        params["keep"] = dict(args.keep)
    if args.append_only is not None:
        params["append_only"] = args.append_only
    for option in ("schedule", "compression", "remote_path", "upload_limit"):
        value = getattr(args, option)
        if value is not None:
            params[option] = value
    return params


def repository_location(location: str) -> str:
    """Local relative paths become absolute; remote locations (with a colon) stay as typed."""
    if ":" in location or os.path.isabs(location):
        return location
    return os.path.abspath(location)


def run_change(invocation: Invocation) -> int:
    params = setting_params(invocation.args)
    if invocation.args.no_exclude:
        if "exclude" in params:
            raise UsageError("--exclude and --no-exclude cannot go together")
        params["exclude"] = []
    if not params:
        raise UsageError("name at least one setting to change (see backupctl change --help)")
    config = invocation.client.call("change", params)
    if invocation.as_json:
        invocation.emit_json(config)
        return EXIT_OK
    invocation.say(f"Changed {', '.join(sorted(params))}.")
    invocation.say(describe_config(Configuration.from_wire(config)))
    return EXIT_OK


def run_config(invocation: Invocation) -> int:
    config = invocation.client.call("config")
    if invocation.as_json:
        invocation.emit_json(config)
        return EXIT_OK
    invocation.say(describe_config(Configuration.from_wire(config)))
    return EXIT_OK


def run_reset(invocation: Invocation) -> int:
    overview = Overview.from_wire(invocation.client.call("status"))
    repository = overview.repository
    show = invocation.warn if invocation.as_json else invocation.say
    show(describe_reset(repository, overview.mirror.location if overview.mirror else None))
    if not confirmed(invocation, "This resets backups on this box.", "reset"):
        invocation.warn("Nothing was reset.")
        return EXIT_ERROR
    result = invocation.client.call("reset")
    if invocation.as_json:
        invocation.emit_json(result)
        return EXIT_OK
    kept = f" The repository at {repository} is still there." if repository else ""
    invocation.say(f"Backups are reset to the defaults.{kept}")
    return EXIT_OK


def run_export_key(invocation: Invocation) -> int:
    answer = invocation.client.call("export_key")
    exported = ExportedKey.from_wire(answer)
    content = to_json(answer) if invocation.as_json else exported.note.rstrip("\n")
    output = invocation.args.output
    if output is None:
        invocation.say(content)
        return EXIT_OK
    try:
        write_new_private_file(output, content + "\n")
    except FileExistsError:
        invocation.warn(f"error: {output} already exists; choose another file or remove it first")
        return EXIT_ERROR
    except OSError as error:
        invocation.warn(f"error: cannot write {output}: {error.strerror or error}")
        return EXIT_ERROR
    if not invocation.as_json:
        invocation.say(
            f"Wrote the key of {exported.repository} with a recovery note to {output}, readable by you only.\n"
            "Keep it, and the passphrase (which it does not contain), somewhere away from this box."
        )
    return EXIT_OK


def run_ssh_key(invocation: Invocation) -> int:
    answer = invocation.client.call("ssh_key")
    if invocation.as_json:
        invocation.emit_json(answer)
        return EXIT_OK
    key = SshKey.from_wire(answer)
    invocation.say(
        f"This box's SSH public key:\n  {key.public_key}\n\n"
        "On the backup server, add this line to the authorized_keys of the account that holds the repository;\n"
        "it lets this key do nothing but add snapshots to its own repository:\n"
        f"  {key.authorized_keys}"
    )
    return EXIT_OK
