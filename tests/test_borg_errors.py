import pytest

from backupctl.protocol import ErrorCode, RpcError
from backupd.borg.errors import BORG_ERRORS, BorgFailed, borg_error, classify, found_damage, is_success, refused_path
from backupd.borg.log_json import LogMessage
from backupd.borg.runner import BorgResult


def log(message: str, msgid: str | None = None, levelname: str = "ERROR") -> LogMessage:
    return LogMessage(levelname=levelname, name="borg.archiver", message=message, msgid=msgid, time=1.0)


@pytest.mark.parametrize(
    ("msgid", "code"),
    [
        ("Repository.DoesNotExist", ErrorCode.REPOSITORY_NOT_FOUND),
        ("Repository.ParentPathDoesNotExist", ErrorCode.REPOSITORY_NOT_FOUND),
        ("Repository.AlreadyExists", ErrorCode.REPOSITORY_EXISTS),
        ("PassphraseWrong", ErrorCode.PASSPHRASE_WRONG),
        ("NoPassphraseFailure", ErrorCode.PASSPHRASE_WRONG),
        ("LockTimeout", ErrorCode.REPOSITORY_LOCKED),
        ("LockFailed", ErrorCode.REPOSITORY_LOCKED),
        ("Repository.InvalidRepository", ErrorCode.REPOSITORY_INVALID),
        ("Repository.InvalidRepositoryConfig", ErrorCode.REPOSITORY_INVALID),
        ("Repository.CheckNeeded", ErrorCode.REPOSITORY_INVALID),
        ("Repository.ObjectNotFound", ErrorCode.REPOSITORY_INVALID),
        ("ConnectionClosed", ErrorCode.REPOSITORY_UNREACHABLE),
        ("ConnectionClosedWithHint", ErrorCode.REPOSITORY_UNREACHABLE),
        ("Archive.DoesNotExist", ErrorCode.NOT_FOUND),
        ("Archive.AlreadyExists", ErrorCode.BORG_FAILED),
        ("Cache.RepositoryAccessAborted", ErrorCode.BORG_FAILED),
    ],
)
def test_classify_by_msgid(msgid: str, code: ErrorCode) -> None:
    assert classify(2, [msgid]) == code


@pytest.mark.parametrize(
    ("exit_code", "code"),
    [
        (10, ErrorCode.REPOSITORY_EXISTS),
        (13, ErrorCode.REPOSITORY_NOT_FOUND),
        (15, ErrorCode.REPOSITORY_INVALID),
        (52, ErrorCode.PASSPHRASE_WRONG),
        (73, ErrorCode.REPOSITORY_LOCKED),
        (80, ErrorCode.REPOSITORY_UNREACHABLE),
        (2, ErrorCode.BORG_FAILED),
        (4, ErrorCode.BORG_FAILED),
        (130, ErrorCode.BORG_FAILED),
        (77, ErrorCode.BORG_FAILED),
    ],
)
def test_classify_by_modern_exit_code(exit_code: int, code: ErrorCode) -> None:
    assert classify(exit_code, []) == code


def test_remote_errors_arrive_with_bare_class_names_and_exit_code_2() -> None:
    assert classify(2, ["DoesNotExist"]) == ErrorCode.REPOSITORY_NOT_FOUND
    assert classify(2, ["InvalidRepositoryConfig"]) == ErrorCode.REPOSITORY_INVALID
    assert classify(2, ["AlreadyExists"]) == ErrorCode.REPOSITORY_EXISTS


def test_msgid_wins_over_exit_code_and_the_latest_known_msgid_counts() -> None:
    assert classify(13, ["LockTimeout"]) == ErrorCode.REPOSITORY_LOCKED
    assert classify(2, ["PassphraseWrong", None, "Something.New"]) == ErrorCode.PASSPHRASE_WRONG


def test_unknown_failures_are_borg_failed() -> None:
    assert classify(2, ["Something.New", None]) == ErrorCode.BORG_FAILED
    assert classify(2, []) == ErrorCode.BORG_FAILED


def test_table_has_one_entry_per_msgid_and_per_specific_exit_code() -> None:
    msgids = [error.msgid for error in BORG_ERRORS]
    exit_codes = [error.exit_code for error in BORG_ERRORS if error.exit_code is not None]
    assert len(msgids) == len(set(msgids))
    assert len(exit_codes) == len(set(exit_codes))
    assert all(3 <= code <= 99 for code in exit_codes)


@pytest.mark.parametrize(("exit_code", "success"), [(0, True), (1, True), (100, True), (107, True), (127, True), (2, False), (13, False), (99, False), (128, False), (130, False)])
def test_is_success(exit_code: int, success: bool) -> None:
    assert is_success(exit_code) is success


def test_borg_error_carries_msgid_exit_code_and_last_lines() -> None:
    result = BorgResult(
        exit_code=13,
        json=None,
        log=[log(f"line {n}", levelname="WARNING") for n in range(15)]
        + [log("Repository /x does not exist.", "Repository.DoesNotExist")],
    )
    error = borg_error(result, repository="/x")
    assert isinstance(error, RpcError) and isinstance(error, BorgFailed)
    assert error.result is result
    assert error.code == "repository_not_found"
    assert error.message == "No repository exists at /x."
    assert error.data["borg_msgid"] == "Repository.DoesNotExist"
    assert error.data["exit_code"] == 13
    assert error.data["last_lines"] == [f"line {n}" for n in range(6, 15)] + ["Repository /x does not exist."]
    assert error.to_wire()["code"] == "repository_not_found"


def test_borg_error_messages_are_sentences_for_people() -> None:
    result = BorgResult(52, None, [log("Passphrase supplied ... is incorrect.", "PassphraseWrong")])
    assert borg_error(result, repository="/x").message == "The passphrase is wrong for the repository at /x."
    assert borg_error(result).message == "The passphrase is wrong for the repository at the configured location."


def test_unknown_failure_message_quotes_borg() -> None:
    result = BorgResult(2, None, [log("info", levelname="INFO"), log("Something broke\nTraceback ...", "Something.New")])
    error = borg_error(result)
    assert error.code == "borg_failed"
    assert error.message == "Borg failed with exit code 2: Something broke"
    assert error.data["borg_msgid"] == "Something.New"


def test_signal_exit_message() -> None:
    error = borg_error(BorgResult(130, None, [log("Keyboard interrupt")]))
    assert error.message == "Borg was stopped by signal 2: Keyboard interrupt"
    assert error.data["borg_msgid"] is None


def test_warning_msgids_do_not_hide_the_error() -> None:
    result = BorgResult(
        2,
        None,
        [log("file changed", "FileChangedWarning", levelname="WARNING"), log("Error: disk on fire", "Error")],
    )
    error = borg_error(result)
    assert error.data["borg_msgid"] == "Error"
    assert error.message == "Borg failed: Error: disk on fire"


def test_secrets_are_redacted_everywhere() -> None:
    secret = "hunter2-secret"
    result = BorgResult(
        2,
        None,
        [log(f"passphrase was {secret}", levelname="WARNING"), log(f"Error: bad {secret}!", "Error")],
    )
    error = borg_error(result, secrets=[secret, ""])
    assert secret not in error.message
    assert secret not in repr(error.to_wire())
    assert error.message == "Borg failed: Error: bad [redacted]!"
    assert error.data["last_lines"] == ["passphrase was [redacted]", "Error: bad [redacted]!"]


def test_the_item_borg_was_refused_permission_for() -> None:
    def warning(message: str, msgid: str = "BackupPermissionError") -> LogMessage:
        return log(message, msgid, levelname="WARNING")

    assert refused_path(warning("dev/sda: [Errno 1] Operation not permitted: 'dev/sda'")) == "dev/sda"
    assert refused_path(warning("dev/a: b: attrs: [Errno 1] Operation not permitted")) == "dev/a: b"
    assert refused_path(warning("dev/sda: [Errno 2] No such file", "BackupFileNotFoundError")) is None
    assert refused_path(warning("no errno here")) is None


def test_damage_is_told_from_a_repository_that_could_not_be_opened() -> None:
    def failure(msgid: str, exit_code: int = 2) -> BorgFailed:
        return borg_error(BorgResult(exit_code, None, [log("x", msgid)]))

    assert found_damage(failure("IntegrityError")) and found_damage(failure("Repository.CheckNeeded"))
    assert not found_damage(failure("PassphraseWrong")) and not found_damage(failure("LockTimeout"))
