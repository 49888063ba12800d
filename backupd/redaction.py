"""Taking secrets out of text before it is shown, logged, saved or sent: borg's lines, job logs,
errors and notifications all go through here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

REDACTED = "[redacted]"


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace each whole occurrence of a secret: one not glued to a letter, digit or underscore
    on a side where the secret itself begins or ends with one. Inside a longer word a short
    secret is most likely chance, and replacing it there would give its letters away."""
    present = [secret for secret in secrets if secret and secret in text]
    if not present:
        return text
    longest_first = sorted(set(present), key=len, reverse=True)
    return re.sub("|".join(_whole_occurrence(secret) for secret in longest_first), REDACTED, text)


def redact_value(value: Any, secrets: Sequence[str]) -> Any:
    """A decoded record (maps, lists, text) with every secret taken out of its text."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {key: redact_value(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, secrets) for item in value]
    return value


def _whole_occurrence(secret: str) -> str:
    before = r"(?<!\w)" if re.match(r"\w", secret) else ""
    after = r"(?!\w)" if re.search(r"\w\Z", secret) else ""
    return f"{before}{re.escape(secret)}{after}"
