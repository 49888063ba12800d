import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backupd.redaction import REDACTED, redact, redact_value


def test_redact_ignores_empty_secrets() -> None:
    assert redact("a b c", ["", "b"]) == "a [redacted] c"


@pytest.mark.parametrize(
    ("text", "secrets", "redacted"),
    [
        ("No repository exists at /srv/repo.", ["p"], "No repository exists at /srv/repo."),
        ("passphrase=p", ["p"], "passphrase=[redacted]"),
        ("p", ["p"], "[redacted]"),
        ("got 'p'.", ["p"], "got '[redacted]'."),
        ("/tmp/p/x", ["p"], "/tmp/[redacted]/x"),
        ("hunter2 hunter22 xhunter2 hunter2_ hunter2!", ["hunter2"], "[redacted] hunter22 xhunter2 hunter2_ [redacted]!"),
        ("BORG_PASSPHRASE=correct horse battery staple\n", ["correct horse battery staple"],
         "BORG_PASSPHRASE=[redacted]\n"),
        ("key: -----x-----.", ["-----x-----"], "key: [redacted]."),
        ("über ü", ["ü"], "über [redacted]"),
        ("pass word, pass", ["pass", "pass word"], "[redacted], [redacted]"),
        ("a.b", ["a.b"], "[redacted]"),
        ("axb", ["a.b"], "axb"),
    ],
)
def test_redact_replaces_whole_occurrences_only(text, secrets, redacted) -> None:
    assert redact(text, secrets) == redacted


word_secret = st.text(alphabet="abpr1_é", min_size=1, max_size=4)
token = st.text(alphabet="abpr1_é", min_size=1, max_size=6)
separator = st.text(alphabet=" =/.:-'\"\n", min_size=1, max_size=2)


@given(word_secret, st.lists(st.tuples(token, separator), max_size=8))
def test_redact_replaces_exactly_the_tokens_that_are_the_secret(secret, pieces) -> None:
    text = "".join(word + gap for word, gap in pieces)
    expected = "".join(REDACTED if part == secret else part for part in re.split(r"(\W+)", text))
    assert redact(text, [secret]) == expected


def test_redact_value_takes_secrets_out_of_nested_records() -> None:
    record = {"message": "bad hunter2", "lines": ["hunter2!", ("x", 2)], "count": 3, "hunter2": None}
    assert redact_value(record, ["hunter2"]) == {
        "message": "bad [redacted]", "lines": ["[redacted]!", ["x", 2]], "count": 3, "hunter2": None,
    }
