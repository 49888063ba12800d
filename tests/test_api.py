"""The method table in this process: every method documented, access levels and declared params
enforced before a handler runs. A real service over a state folder; no borg is reached."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio

from backupctl.protocol import API_VERSION, ErrorCode, Request, RpcError
from backupd.access import Level, Peer
from backupd.api import METHODS, dispatch
from backupd.params import PathName
from backupd.service import Service
from backupd.settings import Access, Settings
from backupd.store import Store

ROOT = Peer(pid=1, uid=0, gid=0, groups=frozenset({0}), command="test")
READER = Peer(pid=2, uid=4242, gid=4242, groups=frozenset({4242}), command="test")
STRANGER = Peer(pid=3, uid=4343, gid=4343, groups=frozenset({4343}), command="test")
ADMIN_METHODS = sorted(name for name, method in METHODS.items() if method.access == Level.ADMIN)
READ_METHODS = sorted(name for name, method in METHODS.items() if method.access == Level.READ)
WRONG_VALUE = {str: 7, bool: "yes", int: "7", list: "a", dict: [], PathName: 7}


@pytest.fixture
def service(tmp_path: Path) -> Service:
    settings = Settings(state_dir=tmp_path / "state", borg_base_dir=tmp_path / "base",
                        access=Access(read_uids=(READER.uid,)))
    store = Store(settings.state_dir)
    store.open()
    service = Service(settings, store)
    service.load()
    return service


async def call(service: Service, method: str, params: dict[str, Any] | None = None, peer: Peer = ROOT) -> Any:
    with trio.fail_after(10):
        return await dispatch(service, Request(1, method, params or {}), peer, lambda shown: None)


def test_every_method_is_documented_in_the_api_reference():
    reference = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    documented = set(re.findall(r"^### (\w+)$", reference, re.MULTILINE))
    assert set(METHODS) <= documented


async def test_an_unknown_method_is_method_not_found(service):
    with pytest.raises(RpcError) as error:
        await call(service, "format_disk")
    assert error.value.code == ErrorCode.METHOD_NOT_FOUND


async def test_ping_and_status_answer_before_anything_is_configured(service):
    assert (await call(service, "ping", peer=READER))["api"] == API_VERSION
    assert (await call(service, "status", peer=READER))["state"] == "unconfigured"


@pytest.mark.parametrize("method", ADMIN_METHODS)
async def test_a_reader_is_forbidden_every_admin_method(service, method):
    with pytest.raises(RpcError) as error:
        await call(service, method, peer=READER)
    assert error.value.code == ErrorCode.FORBIDDEN


@pytest.mark.parametrize("method", READ_METHODS)
async def test_an_unlisted_user_is_forbidden_even_the_read_methods(service, method):
    with pytest.raises(RpcError) as error:
        await call(service, method, peer=STRANGER)
    assert error.value.code == ErrorCode.FORBIDDEN


@pytest.mark.parametrize("method", sorted(METHODS))
async def test_an_undeclared_option_is_refused_by_name(service, method):
    with pytest.raises(RpcError) as error:
        await call(service, method, {"no_such_option": 1})
    assert error.value.code == ErrorCode.INVALID_PARAMS
    assert error.value.data == {"param": "no_such_option"}


@pytest.mark.parametrize("method, param", [
    (name, param) for name, method in sorted(METHODS.items()) for param in method.params
])
async def test_an_option_of_the_wrong_kind_is_refused_by_name(service, method, param):
    required = {other.name: _valid(other.kind) for other in METHODS[method].params if other.required}
    with pytest.raises(RpcError) as error:
        await call(service, method, {**required, param.name: WRONG_VALUE[param.kind]})
    assert error.value.code == ErrorCode.INVALID_PARAMS
    assert error.value.data["param"] == param.name


@pytest.mark.parametrize("method, param", [
    (name, param) for name, method in sorted(METHODS.items()) for param in method.params if param.required
])
async def test_a_missing_required_option_is_refused_by_name(service, method, param):
    others = {other.name: _valid(other.kind) for other in METHODS[method].params
              if other.required and other is not param}
    with pytest.raises(RpcError) as error:
        await call(service, method, others)
    assert error.value.code == ErrorCode.INVALID_PARAMS
    assert error.value.data["param"] == param.name


def _valid(kind: type) -> Any:
    return {str: "x", bool: True, int: 1, list: [], dict: {}, PathName: "/x"}[kind]
