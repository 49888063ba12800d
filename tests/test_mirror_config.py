"""The mirror's options: validation, defaults, what admins see, and rclone's remote settings."""

from __future__ import annotations

import pytest

from backupctl.protocol import RpcError
from backupd.mirror.config import MirrorConfig, mirror_from_params

KEYS = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t/Key+value"}


def mirror(**options: str) -> MirrorConfig:
    return mirror_from_params({"provider": "s3", "bucket": "edgebox-backups", **KEYS, **options}, "kitchen")


def test_the_prefix_defaults_to_the_box_name_and_the_secret_is_only_said_to_be_set() -> None:
    config = mirror()
    assert config.prefix == "kitchen"
    assert config.remote == "mirror:edgebox-backups/kitchen"
    assert config.public() == {"provider": "s3", "bucket": "edgebox-backups", "prefix": "kitchen", "region": None,
                               "access_key_id": "AKIAEXAMPLE", "secret_set": True}
    assert "s3cr3t" not in repr(config)
    assert MirrorConfig.from_record(config.to_record()) == config


@pytest.mark.parametrize(("options", "expected"), [
    ({}, {"TYPE": "s3", "PROVIDER": "AWS", "REGION": "us-east-1"}),
    ({"provider": "wasabi", "region": "eu-central-1"},
     {"TYPE": "s3", "PROVIDER": "Wasabi", "ENDPOINT": "s3.eu-central-1.wasabisys.com"}),
    ({"provider": "https://minio.example.net:9000"},
     {"TYPE": "s3", "PROVIDER": "Other", "ENDPOINT": "https://minio.example.net:9000", "FORCE_PATH_STYLE": "true"}),
    ({"provider": "b2", "bucket": "Edgebox-Backups"},
     {"TYPE": "b2", "ACCOUNT": "AKIAEXAMPLE", "KEY": "s3cr3t/Key+value", "HARD_DELETE": "true"}),
])
def test_each_provider_becomes_an_rclone_remote_in_environment_variables(
    options: dict[str, str], expected: dict[str, str]
) -> None:
    environment = mirror(**options).rclone_environment()
    assert {f"RCLONE_CONFIG_MIRROR_{name}": value for name, value in expected.items()}.items() <= environment.items()
    assert "s3cr3t/Key+value" in environment.values()
    if options.get("provider") != "b2":
        assert environment["RCLONE_CONFIG_MIRROR_NO_CHECK_BUCKET"] == "true"  # never creates a bucket


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "http://[::1]:9000", "http://localhost:9000",
                                      "https://192.168.1.20:9000"])
def test_plain_http_is_for_a_service_on_this_box_only(endpoint: str) -> None:
    assert mirror(provider=endpoint).provider == endpoint


@pytest.mark.parametrize(("param", "value"), [
    ("provider", "ftp://example.net"),
    ("provider", "https://user:pass@example.net"),
    ("provider", "https://example.net/path"),
    ("provider", "http://minio.example.net:9000"),
    ("provider", "http://192.168.1.20:9000"),
    ("provider", "gcs"),
    ("bucket", "ab"),
    ("bucket", "Upper_Case"),
    ("bucket", "-leading"),
    ("prefix", "/absolute"),
    ("prefix", "a/../b"),
    ("prefix", "trailing/"),
    ("prefix", "with space"),
    ("region", "EU West"),
    ("access_key_id", "has space"),
    ("secret_access_key", ""),
    ("secret_access_key", "line\nbreak"),
])
def test_bad_values_are_invalid_params_naming_the_option(param: str, value: str) -> None:
    with pytest.raises(RpcError) as refused:
        mirror(**{param: value})
    assert (refused.value.code, refused.value.data) == ("invalid_params", {"param": param})
    if param == "secret_access_key":
        assert value not in refused.value.message or not value
