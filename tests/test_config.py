import pytest
from borg.compress import CompressionSpec
from borg.patterns import parse_exclude_pattern
from hypothesis import given
from hypothesis import strategies as st

from backupctl.protocol import RpcError
from backupd.config import (
    CONFIGURE_PARAMS,
    MIN_NEW_PASSPHRASE_LENGTH,
    BackupConfig,
    check_new_passphrase,
    config_from_params,
    unconfigured_view,
)
from backupd.params import check_params
from backupd.settings import Defaults


def configure(params: dict, defaults: Defaults = Defaults()) -> BackupConfig:
    return config_from_params(check_params(params, CONFIGURE_PARAMS), defaults)


def rejected(params: dict) -> RpcError:
    with pytest.raises(RpcError) as raised:
        configure(params)
    assert raised.value.code == "invalid_params"
    return raised.value


def test_defaults_fill_what_is_missing(tmp_path):
    defaults = Defaults(sources=(str(tmp_path),), schedule="daily", compression="zstd,3")
    config = configure({"repository": "/srv/repo", "passphrase": "secret"}, defaults)
    assert config.sources == (str(tmp_path),)
    assert config.schedule == "daily" and config.compression == "zstd,3"
    assert config.keep["daily"] == 7


def test_public_view_never_holds_the_passphrase(tmp_path):
    config = configure({"repository": "/srv/repo", "passphrase": "s3cret", "sources": [str(tmp_path)]})
    view = config.public()
    assert "passphrase" not in view and view["passphrase_set"] is True
    assert "s3cret" not in repr(view) and "s3cret" not in repr(config)


def test_record_round_trip(tmp_path):
    config = configure({"repository": "user@host:backups", "passphrase": "p", "sources": [str(tmp_path)],
                        "exclude": ["*.tmp"], "keep": {"daily": 3}})
    assert BackupConfig.from_record(config.to_record()) == config
    assert config.keep == {"hourly": 0, "daily": 3, "weekly": 0, "monthly": 0, "yearly": 0}


@pytest.mark.parametrize(
    "repository",
    ["", "relative/path", "-x", "--rsh=evil", "/srv/repo::archive", " /srv/repo", "/srv/\nrepo", "ftp://host/x",
     "ssh://borg:s3cret@nas/repo", "borg:s3cret@nas:repo", "ssh://-oProxyCommand=touch/repo",
     "borg@-oProxyCommand=touch:repo", "-oProxyCommand=touch:repo", "ssh://nas", "ssh://nas/ repo", "nas:repo"],
)
def test_bad_repository_locations(repository, tmp_path):
    error = rejected({"repository": repository, "passphrase": "p", "sources": [str(tmp_path)]})
    assert error.data["param"] == "repository"


@pytest.mark.parametrize("repository", ["/srv/repo", "ssh://borg@backup.example:2222/./repo", "borg@nas:repo",
                                        "ssh://borg@[fd00:1:2:3:4:5:6:7]:2222/srv/repo", "ssh://nas.local/~/repo"])
def test_good_repository_locations(repository, tmp_path):
    assert configure({"repository": repository, "passphrase": "p", "sources": [str(tmp_path)]}).repository == repository


@pytest.mark.parametrize(
    "change, param",
    [
        ({"passphrase": ""}, "passphrase"),
        ({"passphrase": "two\nlines"}, "passphrase"),
        ({"sources": []}, "sources"),
        ({"sources": ["relative"]}, "sources"),
        ({"sources": ["/does/not/exist"]}, "sources"),
        ({"sources": [1]}, "sources"),
        ({"schedule": "sometimes"}, "schedule"),
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"keep": {"daily": -1}}, "keep"),
        ({"keep": {"fortnightly": 2}}, "keep"),
        ({"keep": {"daily": True}}, "keep"),
        ({"encryption": "rot13"}, "encryption"),
        ({"compression": "gzip"}, "compression"),
        ({"colour": "blue"}, "colour"),
        ({"repository": 5}, "repository"),
    ],
)
def test_bad_values_name_their_param(change, param, tmp_path):
    params = {"repository": "/srv/repo", "passphrase": "p", "sources": [str(tmp_path)], **change}
    assert rejected(params).data["param"] == param


def test_missing_required_param():
    assert rejected({"passphrase": "p"}).data["param"] == "repository"


def test_unconfigured_view_shows_defaults_without_secrets():
    view = unconfigured_view(Defaults(sources=("/data",)))
    assert view["repository"] is None and view["passphrase_set"] is False and view["sources"] == ["/data"]


def borg_takes_compression(spec: str) -> bool:
    try:
        CompressionSpec(spec)
    except Exception:
        return False
    return True


def borg_takes_exclude(pattern: str) -> bool:
    try:
        parse_exclude_pattern(pattern)
    except Exception:
        return False
    return True


GOOD_COMPRESSION = [
    "none", "lz4", "zstd", "zstd,1", "zstd,22", "zlib", "zlib,0", "zlib,9", "lzma", "lzma,0", "lzma,9",
    "auto,lz4", "auto,zstd,3", "auto,none", "obfuscate,1,lz4", "obfuscate,6,zstd,3", "obfuscate,110,none",
    "obfuscate,123,auto,zstd,22",
]
# What borg itself refuses: each of these accepted would fail every later snapshot.
BORG_REFUSES_COMPRESSION = [
    "zstd,99", "zstd,0", "zstd,-1", "zlib,10", "lzma,10", "lz4\n", "auto,$(id)", "auto", "gzip", "LZ4", " lz4",
    "zstd,", "zstd,1,2", "obfuscate,7,lz4", "obfuscate,124,lz4", "obfuscate,0,lz4", "obfuscate,1", "obfuscate,1,auto",
    "auto,obfuscate,1,lz4", "",
]
# Borg lets these through, but they are not its documented forms.
UNDOCUMENTED_COMPRESSION = ["zstd,1\n", "zstd, 3", "zstd,+3", "lz4,1", "none,1", "auto,auto,lz4", "zstd,\u0663"]


@pytest.mark.parametrize("spec", GOOD_COMPRESSION)
def test_borgs_compression_forms_are_accepted(spec, tmp_path):
    assert borg_takes_compression(spec)
    assert configure({"repository": "/srv/repo", "passphrase": "p", "sources": [str(tmp_path)],
                      "compression": spec}).compression == spec


@pytest.mark.parametrize("spec", BORG_REFUSES_COMPRESSION + UNDOCUMENTED_COMPRESSION)
def test_compression_borg_would_refuse_or_not_document_is_refused(spec, tmp_path):
    assert borg_takes_compression(spec) == (spec in UNDOCUMENTED_COMPRESSION)
    error = rejected({"repository": "/srv/repo", "passphrase": "p", "sources": [str(tmp_path)], "compression": spec})
    assert error.data["param"] == "compression"
    assert repr(spec) in error.message


compression_words = st.sampled_from(
    ["none", "lz4", "zstd", "zlib", "lzma", "auto", "obfuscate", "0", "1", "3", "6", "9", "10", "22", "23",
     "110", "123", "124", "250", "x", " 3", "03", "-1", ""]
)


@given(st.lists(compression_words, min_size=1, max_size=5).map(",".join))
def test_every_accepted_compression_is_one_borg_takes(spec):
    try:
        config_from_params({"repository": "/srv/repo", "passphrase": "p", "sources": ["/"], "compression": spec},
                           Defaults())
    except RpcError as error:
        assert error.data["param"] == "compression"
    else:
        assert borg_takes_compression(spec)


GOOD_EXCLUDE = ["*.tmp", "/data/cache", "fm:*.o", "sh:**/node_modules", "re:\\.log$", "pp:/data/tmp",
                "pf:/data/big.iso", "-leading-dash", "a:b", "abc:d", "é:x"]
BAD_EXCLUDE = ["", "a\nb", "a\rb", "a\0b", "re:(", "re:[a-", "re:", "fm:", "xx:foo", "12:30", "RE:x"]


@pytest.mark.parametrize("pattern", GOOD_EXCLUDE)
def test_borgs_pattern_styles_are_accepted(pattern, tmp_path):
    assert borg_takes_exclude(pattern)
    config = configure({"repository": "/srv/repo", "passphrase": "p", "sources": [str(tmp_path)],
                        "exclude": ["*.bak", pattern]})
    assert config.exclude == ("*.bak", pattern)


@pytest.mark.parametrize("pattern", BAD_EXCLUDE)
def test_exclude_patterns_borg_cannot_use_are_refused(pattern, tmp_path):
    if "\0" not in pattern and "\n" not in pattern and "\r" not in pattern and pattern[3:]:
        assert not borg_takes_exclude(pattern)
    error = rejected({"repository": "/srv/repo", "passphrase": "p", "sources": [str(tmp_path)],
                      "exclude": ["*.bak", pattern]})
    assert error.data["param"] == "exclude"
    assert repr(pattern) in error.message


@given(st.text(alphabet="ab1:/*?[]().^$+\\{}-!é\n", min_size=1, max_size=10))
def test_every_accepted_exclude_is_one_borg_takes(pattern):
    try:
        config_from_params({"repository": "/srv/repo", "passphrase": "p", "sources": ["/"], "exclude": [pattern]},
                           Defaults())
    except RpcError as error:
        assert error.data["param"] == "exclude"
    else:
        assert borg_takes_exclude(pattern)


def test_defaults_from_settings_are_checked_too(tmp_path):
    with pytest.raises(RpcError) as raised:
        configure({"repository": "/srv/repo", "passphrase": "p", "sources": [str(tmp_path)]},
                  Defaults(compression="zstd,99"))
    assert raised.value.data["param"] == "compression"


@pytest.mark.parametrize("passphrase", ["p", "seven77", "\u00e9" * (MIN_NEW_PASSPHRASE_LENGTH - 1)])
def test_a_new_repository_needs_a_passphrase_of_the_minimum_length(passphrase):
    with pytest.raises(RpcError) as raised:
        check_new_passphrase(passphrase)
    assert raised.value.code == "invalid_params" and raised.value.data["param"] == "passphrase"
    assert str(MIN_NEW_PASSPHRASE_LENGTH) in raised.value.message


@pytest.mark.parametrize("passphrase", ["eight888", "correct horse battery staple", "\u00e9" * MIN_NEW_PASSPHRASE_LENGTH])
def test_passphrases_of_the_minimum_length_or_longer_may_create(passphrase):
    check_new_passphrase(passphrase)


@pytest.mark.parametrize(
    "layout, named",
    [
        (["{a}", "{a}/b"], ("{a}/b is inside source {a}",)),
        (["{a}/b", "{a}"], ("{a}/b is inside source {a}",)),
        (["{a}", "{a}/"], ("{a} is listed twice",)),
        (["{a}", "{a}/b/../b/.."], ("{a} is listed twice",)),
    ],
    ids=["inside", "inside-listed-first", "twice", "twice-unnormalised"],
)
def test_overlapping_sources_are_refused_naming_both(tmp_path, layout, named):
    (tmp_path / "a" / "b").mkdir(parents=True)
    sources = [entry.format(a=tmp_path / "a") for entry in layout]
    error = rejected({"repository": "/srv/repo", "passphrase": "p", "sources": sources})
    assert error.data == {"param": "sources"}
    for words in named:
        assert words.format(a=tmp_path / "a") in error.message


def test_sources_side_by_side_or_sharing_a_name_prefix_are_fine(tmp_path):
    for name in ("a", "ab", "a b"):
        (tmp_path / name).mkdir()
    sources = [str(tmp_path / name) for name in ("a", "ab", "a b")]
    assert configure({"repository": "/srv/repo", "passphrase": "p", "sources": sources}).sources == tuple(sources)


def test_change_sets_what_it_is_given_and_keeps_the_rest(tmp_path):
    from backupd.config import CHANGE_PARAMS, changed_config

    config = configure({"repository": "/srv/repo", "passphrase": "secret", "sources": [str(tmp_path)],
                        "exclude": ["*.tmp"], "keep": {"daily": 3, "weekly": 2}})
    changed = changed_config(config, check_params({"schedule": "daily 02:30", "keep": {"daily": 9}}, CHANGE_PARAMS))
    assert changed.schedule == "daily 02:30"
    assert changed.keep == {"hourly": 0, "daily": 9, "weekly": 2, "monthly": 0, "yearly": 0}
    assert (changed.passphrase, changed.sources, changed.exclude) == ("secret", (str(tmp_path),), ("*.tmp",))
    with pytest.raises(RpcError) as raised:
        changed_config(config, check_params({"keep": {"fortnightly": 3}}, CHANGE_PARAMS))
    assert raised.value.data == {"param": "keep"}
    with pytest.raises(RpcError):
        check_params({"passphrase": "other"}, CHANGE_PARAMS)


def test_configure_of_the_same_repository_keeps_what_it_is_not_given(tmp_path):
    first = configure({"repository": "/srv/repo", "passphrase": "secret", "sources": [str(tmp_path)],
                       "schedule": "daily", "compression": "zstd,3"})
    again = config_from_params(check_params({"repository": "/srv/repo", "passphrase": "secret"}, CONFIGURE_PARAMS),
                               Defaults(), current=first)
    assert again == first
    elsewhere = config_from_params(check_params({"repository": "/srv/other", "passphrase": "secret"},
                                                CONFIGURE_PARAMS), Defaults(), current=first)
    assert elsewhere.sources == () and elsewhere.schedule == Defaults().schedule
