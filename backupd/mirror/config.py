"""The mirror's configuration: where in which bucket, with which keys; validation and the redacted view.

The secret key is write-only like the passphrase: it is kept only in the state folder and
given to rclone through its environment (``RCLONE_CONFIG_<REMOTE>_*``), never in argv.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from backupd.errors import invalid_params
from backupd.mirror.owner import new_claim
from backupd.params import Param

PROVIDERS = ("s3", "b2", "wasabi")
# What rclone calls the remote; its settings are the environment variables RCLONE_CONFIG_MIRROR_*.
REMOTE_NAME = "mirror"
DEFAULT_REGION = {"s3": "us-east-1", "wasabi": "us-east-1"}

MIRROR_PARAMS = (
    Param("provider", str, required=True),
    Param("bucket", str, required=True),
    Param("prefix", str),
    Param("region", str),
    Param("access_key_id", str, required=True),
    Param("secret_access_key", str, required=True),
    Param("take_over", bool),
    Param("replace_object_count", int),
)

_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_B2_BUCKET = re.compile(r"^[A-Za-z0-9-]{6,50}$")
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
_REGION = re.compile(r"^[a-z0-9-]{1,40}$")
_KEY = re.compile(r"^[\x21-\x7e]{1,256}$")


@dataclass(frozen=True)
class MirrorConfig:
    provider: str  # s3, b2, wasabi, or the endpoint URL of any S3-compatible service
    bucket: str
    prefix: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    region: str | None = None
    # This configuration's claim on the prefix: the name of its owner object there.
    claim: str = field(default="", repr=False)

    @property
    def bucket_root(self) -> str:
        return f"{REMOTE_NAME}:{self.bucket}"

    @property
    def remote(self) -> str:
        """The mirror's folder as rclone names it: bucket and prefix on the remote."""
        return f"{REMOTE_NAME}:{self.bucket}/{self.prefix}"

    def location(self) -> str:
        """Where the mirror is, for people: no key, no secret."""
        service = self.provider if self.provider in PROVIDERS else _endpoint_host(self.provider)
        return f"{service}://{self.bucket}/{self.prefix}"

    def public(self) -> dict[str, Any]:
        """What admins see: the secret is only said to be set."""
        return {
            "provider": self.provider,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "region": self.region,
            "access_key_id": self.access_key_id,
            "secret_set": bool(self.secret_access_key),
        }

    def secrets(self) -> tuple[str, ...]:
        return (self.secret_access_key,)

    def rclone_environment(self) -> dict[str, str]:
        """The remote's settings as rclone reads them from its environment."""
        settings: dict[str, str]
        if self.provider == "b2":
            settings = {"type": "b2", "account": self.access_key_id, "key": self.secret_access_key,
                        "hard_delete": "true"}
        else:
            settings = {"type": "s3", "access_key_id": self.access_key_id,
                        "secret_access_key": self.secret_access_key, "no_check_bucket": "true"}
            if self.provider == "s3":
                settings.update(provider="AWS", region=self.region or DEFAULT_REGION["s3"])
            elif self.provider == "wasabi":
                region = self.region or DEFAULT_REGION["wasabi"]
                settings.update(provider="Wasabi", region=region, endpoint=f"s3.{region}.wasabisys.com")
            else:
                settings.update(provider="Other", endpoint=self.provider, force_path_style="true")
                if self.region:
                    settings["region"] = self.region
        prefix = f"RCLONE_CONFIG_{REMOTE_NAME.upper()}_"
        return {prefix + name.upper(): value for name, value in settings.items()}

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MirrorConfig:
        return cls(
            provider=record["provider"],
            bucket=record["bucket"],
            prefix=record["prefix"],
            access_key_id=record["access_key_id"],
            secret_access_key=record["secret_access_key"],
            region=record.get("region"),
            claim=record.get("claim") or "",
        )


def mirror_from_params(params: dict[str, Any], box_name: str) -> MirrorConfig:
    """Validate the mirror options (already checked against MIRROR_PARAMS); the prefix defaults
    to the box's name."""
    provider = _provider(params["provider"])
    return MirrorConfig(
        provider=provider,
        bucket=_bucket(params["bucket"], provider),
        prefix=_prefix(params.get("prefix", box_name)),
        region=_region(params.get("region")),
        access_key_id=_key("access_key_id", params["access_key_id"]),
        secret_access_key=_key("secret_access_key", params["secret_access_key"]),
        claim=new_claim(),
    )


def _provider(provider: str) -> str:
    if provider in PROVIDERS:
        return provider
    parts = urlsplit(provider)
    if parts.scheme in ("http", "https") and parts.hostname and not parts.username and not parts.password \
            and parts.path in ("", "/") and not parts.query and not parts.fragment and provider.isprintable():
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise invalid_params("provider", f"http:// sends the keys and the requests unencrypted: it is only for a "
                                 f"service on this box (127.0.0.1, ::1, localhost); use https://{parts.netloc}")
        return provider.rstrip("/")
    raise invalid_params("provider", f"provider must be one of {', '.join(PROVIDERS)} or the endpoint URL of "
                         "an S3-compatible service (https://host[:port], no key in it)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bucket(bucket: str, provider: str) -> str:
    pattern, rule = (_B2_BUCKET, "6 to 50 letters, digits and hyphens") if provider == "b2" else \
        (_S3_BUCKET, "3 to 63 lowercase letters, digits, dots and hyphens")
    if not pattern.match(bucket):
        raise invalid_params("bucket", f"{bucket!r} is not a bucket name: use {rule}")
    return bucket


def _prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix) or len(prefix) > 512 or any(part in (".", "..") for part in prefix.split("/")):
        raise invalid_params("prefix", f"{prefix!r} is not a folder in a bucket: use letters, digits, '.', '_', "
                             "'-' and '/' between names, with no leading or trailing '/'")
    return prefix


def _region(region: str | None) -> str | None:
    if region is not None and not _REGION.match(region):
        raise invalid_params("region", f"{region!r} is not a region name such as eu-central-1")
    return region


def _key(name: str, value: str) -> str:
    if not _KEY.match(value):
        raise invalid_params(name, f"{name} must be printable text without spaces")
    return value


def _endpoint_host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url
