import pytest

from backupctl.protocol import RpcError
from backupd.config import CONFIGURE_PARAMS, BackupConfig, config_from_params, unconfigured_view
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
