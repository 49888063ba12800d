import sys
from pathlib import Path

import pytest

from backupd.settings import Settings, SettingsError, load_settings, parse_settings


def test_empty_file_means_defaults(tmp_path):
    path = tmp_path / "backupd.toml"
    path.write_text("")
    settings = load_settings(path)
    assert settings == Settings()
    assert settings.borg == (sys.executable, "-m", "borg")


def test_relative_paths_are_relative_to_the_file(tmp_path):
    path = tmp_path / "backupd.toml"
    path.write_text('socket = "run/backupd.sock"\nstate_dir = "/var/lib/x"\n'
                    '[defaults]\nsources = ["/data"]\nschedule = "daily"\n[defaults.keep]\ndaily = 3\n'
                    '[access]\nadmin_groups = ["backup-admins"]\n')
    settings = load_settings(path)
    assert settings.socket == tmp_path / "run" / "backupd.sock"
    assert settings.state_dir == Path("/var/lib/x")
    assert settings.defaults.sources == ("/data",) and settings.defaults.keep["daily"] == 3
    assert settings.access.admin_groups == ("backup-admins",)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"sokcet": "/x"}, "sokcet"),
        ({"defaults": {"schedule": 5}}, "defaults.schedule"),
        ({"defaults": {"keep": {"daily": "7"}}}, "defaults.keep.daily"),
        ({"defaults": {"keep": {"daily": True}}}, "defaults.keep.daily"),
        ({"borg": []}, "borg"),
        ({"access": {"admin_groups": [1]}}, "access.admin_groups"),
        ({"upload_limit": -1}, "upload_limit"),
        ({"upload_limit": "1M"}, "upload_limit"),
        ({"mirror_stall_seconds": -1}, "mirror_stall_seconds"),
        ({"defaults": {"compression": "zstd,99"}}, "defaults.compression"),
        ({"defaults": {"compression": "lz4\n"}}, "defaults.compression"),
        ({"defaults": {"exclude": ["*.tmp", "re:("]}}, "defaults.exclude"),
        ({"defaults": {"exclude": ["xx:cache"]}}, "defaults.exclude"),
        ({"idle_timeout": -1}, "idle_timeout"),
        ({"max_connections_per_user": "16"}, "max_connections_per_user"),
    ],
)
def test_bad_settings_name_the_key(raw, fragment):
    with pytest.raises(SettingsError, match=fragment.replace(".", r"\.")):
        parse_settings(raw)


def test_unreadable_file_is_a_settings_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("socket = ")
    with pytest.raises(SettingsError, match="cannot read settings"):
        load_settings(path)


@pytest.mark.parametrize("name", ["backupd.toml", "backupd.system.toml"])
def test_the_example_settings_files_are_valid(name):
    settings = load_settings(Path(__file__).resolve().parent.parent / "examples" / name)
    assert settings.defaults.keep["daily"] == 7
