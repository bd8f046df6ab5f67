"""Settings resolution: flag > environment > file > default, and clear config errors."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from feedctl import config as config_module
from feedctl.config import Settings, load_settings
from feedctl.errors import EXIT_USAGE, ConfigError

NO_ENV: dict[str, str] = {}
DEFAULTS = {field.name: field.default for field in dataclasses.fields(Settings)}


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory (no stray ./feedctl.toml) with a known XDG home, and no
    config file in the user's or the system's config folder."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG_FILES", ())
    return work


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_config_error_exit_code() -> None:
    assert ConfigError.exit_code == EXIT_USAGE == 2


def test_defaults_without_file_env_or_flags(tmp_path: Path) -> None:
    settings = load_settings(None, None, NO_ENV)
    assert settings == Settings(home=tmp_path / "xdg" / "feedctl")
    assert settings.feed_cap == DEFAULTS["feed_cap"]
    assert settings.database_url is None
    assert settings.heuristic is None


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "c.toml",
        'feed_cap = 100\nbatch_size = 10\nredis_key_prefix = "file:"\n',
    )
    environ = {"FEEDCTL_FEED_CAP": "200", "FEEDCTL_REDIS_KEY_PREFIX": "env:"}
    settings = load_settings(config, {"feed_cap": 300}, environ)
    assert settings.feed_cap == 300  # flag
    assert settings.redis_key_prefix == "env:"  # env beats file
    assert settings.batch_size == 10  # file beats default
    assert settings.active_window_days == DEFAULTS["active_window_days"]  # default

    assert load_settings(config, {}, environ).feed_cap == 200
    assert load_settings(config, {}, NO_ENV).feed_cap == 100


def test_none_flag_does_not_override(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.toml", "feed_cap = 100\n")
    settings = load_settings(config, {"feed_cap": None}, {"FEEDCTL_FEED_CAP": "200"})
    assert settings.feed_cap == 200


def test_every_key_has_an_environment_variable(tmp_path: Path) -> None:
    environ = {
        "FEEDCTL_DATABASE_URL": "postgresql://db/x",
        "FEEDCTL_REDIS_URL": "redis://r:6379/0",
        "FEEDCTL_PUSHGATEWAY_URL": "http://pg:9091",
        "FEEDCTL_HOME": str(tmp_path / "home"),
        "FEEDCTL_REDIS_KEY_PREFIX": "p:",
        "FEEDCTL_FEED_CAP": "12",
        "FEEDCTL_HEURISTIC": str(tmp_path / "h.toml"),
        "FEEDCTL_ACTIVE_WINDOW_DAYS": "0",
        "FEEDCTL_BATCH_SIZE": " 99 ",
        "FEEDCTL_CURSOR_SECRET": "new-secret-0123456789, old-secret-0123456789",
        "FEEDCTL_FEED_RETENTION": "12h",
    }
    assert load_settings(None, None, environ) == Settings(
        database_url="postgresql://db/x",
        redis_url="redis://r:6379/0",
        pushgateway_url="http://pg:9091",
        home=tmp_path / "home",
        redis_key_prefix="p:",
        feed_cap=12,
        heuristic=tmp_path / "h.toml",
        active_window_days=0,
        batch_size=99,
        cursor_secret=("new-secret-0123456789", "old-secret-0123456789"),
        feed_retention="12h",
    )


def test_empty_optional_url_means_none(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.toml", 'database_url = "postgresql://file"\n')
    assert load_settings(config, None, {"FEEDCTL_DATABASE_URL": ""}).database_url is None
    assert load_settings(config, None, NO_ENV).database_url == "postgresql://file"


def test_paths_expand_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    settings = load_settings(None, {"heuristic": "~/h.toml"}, NO_ENV)
    assert settings.heuristic == tmp_path / "user" / "h.toml"


def test_file_in_current_directory_is_read(workdir: Path) -> None:
    _write(workdir / "feedctl.toml", "feed_cap = 42\n")
    assert load_settings(None, None, NO_ENV).feed_cap == 42


def test_explicit_file_replaces_current_directory_file(workdir: Path, tmp_path: Path) -> None:
    _write(workdir / "feedctl.toml", "feed_cap = 42\nbatch_size = 3\n")
    config = _write(tmp_path / "c.toml", "feed_cap = 7\n")
    settings = load_settings(config, None, NO_ENV)
    assert settings.feed_cap == 7
    assert settings.batch_size == DEFAULTS["batch_size"]  # ./feedctl.toml was not read


def test_feedctl_config_variable_is_used(workdir: Path, tmp_path: Path) -> None:
    _write(workdir / "feedctl.toml", "feed_cap = 42\n")
    config = _write(tmp_path / "c.toml", "feed_cap = 8\n")
    assert load_settings(None, None, {"FEEDCTL_CONFIG": str(config)}).feed_cap == 8


def test_explicit_path_beats_feedctl_config_variable(tmp_path: Path) -> None:
    explicit = _write(tmp_path / "a.toml", "feed_cap = 1\n")
    from_env = _write(tmp_path / "b.toml", "feed_cap = 2\n")
    settings = load_settings(explicit, None, {"FEEDCTL_CONFIG": str(from_env)})
    assert settings.feed_cap == 1


def test_missing_explicit_file_is_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_settings(missing, None, NO_ENV)
    assert str(missing) in info.value.message


def test_missing_feedctl_config_file_is_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(None, None, {"FEEDCTL_CONFIG": str(missing)})


def test_directory_as_config_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path, None, NO_ENV)


@pytest.mark.parametrize("text", ["feed_cap = ", "feed_cap = 1\nfeed_cap = 2\n", "[oops"])
def test_malformed_toml_is_config_error(tmp_path: Path, text: str) -> None:
    config = _write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(config, None, NO_ENV)


def test_malformed_current_directory_file_is_config_error(workdir: Path) -> None:
    _write(workdir / "feedctl.toml", "feed_cap = = 3\n")
    with pytest.raises(ConfigError, match=r"feedctl\.toml is not valid TOML"):
        load_settings(None, None, NO_ENV)


@pytest.mark.parametrize("text", ["feed_kap = 10\n", "[database]\nurl = 'x'\n"])
def test_unknown_key_in_file_is_named(tmp_path: Path, text: str) -> None:
    config = _write(tmp_path / "c.toml", text)
    key = "feed_kap" if "feed_kap" in text else "database"
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        load_settings(config, None, NO_ENV)


def test_unknown_flag_is_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'feed_kap'"):
        load_settings(None, {"feed_kap": 3}, NO_ENV)


def test_unrelated_environment_variables_are_ignored() -> None:
    settings = load_settings(None, None, {"FEEDCTL_NOT_A_SETTING": "x", "FEED_CAP": "1"})
    assert settings.feed_cap == DEFAULTS["feed_cap"]


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('feed_cap = "many"', "feed_cap"),
        ("feed_cap = true", "feed_cap"),
        ("batch_size = [1]", "batch_size"),
        ("database_url = 5", "database_url"),
        ("cursor_secret = false", "cursor_secret"),
        ("home = 3", "home"),
        ('heuristic = ""', "heuristic"),
        ("redis_url = { host = 'x' }", "redis_url"),
    ],
)
def test_wrong_type_in_file_is_named(tmp_path: Path, line: str, key: str) -> None:
    config = _write(tmp_path / "c.toml", line + "\n")
    with pytest.raises(ConfigError, match=f"^{key} \\(from ") as info:
        load_settings(config, None, NO_ENV)
    assert str(config) in info.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FEEDCTL_FEED_CAP", "ten"),
        ("FEEDCTL_FEED_CAP", "1.5"),
        ("FEEDCTL_BATCH_SIZE", ""),
        ("FEEDCTL_ACTIVE_WINDOW_DAYS", "-1"),
        ("FEEDCTL_HOME", ""),
    ],
)
def test_bad_environment_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(None, None, {name: value})


@pytest.mark.parametrize("value", [0, -1, -5000])
def test_non_positive_feed_cap_is_rejected_from_every_source(tmp_path: Path, value: int) -> None:
    config = _write(tmp_path / "c.toml", f"feed_cap = {value}\n")
    with pytest.raises(ConfigError, match=r"feed_cap.*must be at least 1"):
        load_settings(config, None, NO_ENV)
    with pytest.raises(ConfigError, match=r"feed_cap.*must be at least 1"):
        load_settings(None, None, {"FEEDCTL_FEED_CAP": str(value)})
    with pytest.raises(ConfigError, match=r"feed_cap.*must be at least 1"):
        load_settings(None, {"feed_cap": value}, NO_ENV)


@pytest.mark.parametrize("override", [{"batch_size": 0}, {"feed_cap": True}, {"home": 5}])
def test_bad_flag_value_is_config_error(override: dict[str, Any]) -> None:
    (key,) = override
    with pytest.raises(ConfigError, match=f"{key} \\(from command line\\)"):
        load_settings(None, override, NO_ENV)


@pytest.mark.parametrize("line", ["feed_cap = 2.5", "active_window_days = 7.9"])
def test_float_for_integer_setting_is_config_error(tmp_path: Path, line: str) -> None:
    config = _write(tmp_path / "c.toml", line + "\n")
    with pytest.raises(ConfigError):
        load_settings(config, None, NO_ENV)


def test_cursor_secrets_from_a_file_are_one_or_a_list(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.toml", 'cursor_secret = "a-secret-of-some-length"\n')
    assert load_settings(one, None, NO_ENV).cursor_secret == ("a-secret-of-some-length",)
    many = _write(
        tmp_path / "many.toml", 'cursor_secret = ["new-secret-0123456", "old-secret-0123456"]\n'
    )
    assert load_settings(many, None, NO_ENV).cursor_secret == (
        "new-secret-0123456",
        "old-secret-0123456",
    )
    assert "secret-0123456" not in repr(load_settings(many, None, NO_ENV))


@pytest.mark.parametrize(
    "value",
    [
        '"short"',
        '["long-enough-secret-1", "short"]',
        '"feedctl-default-cursor-secret"',
        "[1]",
        "[]",
    ],
)
def test_weak_or_retired_cursor_secrets_are_refused(tmp_path: Path, value: str) -> None:
    config = _write(tmp_path / "c.toml", f"cursor_secret = {value}\n")
    if value == "[]":
        assert load_settings(config, None, NO_ENV).cursor_secret == ()
        return
    with pytest.raises(ConfigError, match=r"^cursor_secret"):
        load_settings(config, None, NO_ENV)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("0", None), (0, None)],
)
def test_feed_retention_is_a_duration_or_zero(
    tmp_path: Path, text: str | int, expected: timedelta | None
) -> None:
    value = f'"{text}"' if isinstance(text, str) else str(text)
    config = _write(tmp_path / "c.toml", f"feed_retention = {value}\n")
    assert load_settings(config, None, NO_ENV).retention == expected
    assert Settings().retention == timedelta(days=30)


@pytest.mark.parametrize("value", ['"forever"', '"-1d"', "true", "2.5", '""'])
def test_bad_feed_retention_is_named(tmp_path: Path, value: str) -> None:
    config = _write(tmp_path / "c.toml", f"feed_retention = {value}\n")
    with pytest.raises(ConfigError, match=r"^feed_retention"):
        load_settings(config, None, NO_ENV)


# --- which file: --config, $FEEDCTL_CONFIG, ./feedctl.toml, XDG config folder, /etc -------


@pytest.fixture
def searched(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """A file at each searched place, in search order, each with its own feed_cap (1, 2, 3)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    system = tmp_path / "etc" / "feedctl" / "feedctl.toml"
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG_FILES", (system,))
    places = [workdir / "feedctl.toml", tmp_path / "xdg-config" / "feedctl" / "feedctl.toml"]
    places.append(system)
    for cap, path in enumerate(places, start=1):
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, f"feed_cap = {cap}\n")
    return places


def test_search_order_first_existing_file_wins(searched: list[Path]) -> None:
    for cap, path in enumerate(searched, start=1):
        settings = load_settings()
        assert (settings.feed_cap, settings.config_file) == (cap, path)
        path.unlink()
    settings = load_settings()
    assert (settings.feed_cap, settings.config_file) == (DEFAULTS["feed_cap"], None)


def test_named_file_beats_every_searched_one(searched: list[Path], tmp_path: Path) -> None:
    named = _write(tmp_path / "named.toml", "feed_cap = 9\n")
    from_env = _write(tmp_path / "from-env.toml", "feed_cap = 8\n")
    assert load_settings(named).config_file == named
    assert load_settings(named, None, {"FEEDCTL_CONFIG": str(from_env)}).feed_cap == 9
    settings = load_settings(None, None, {"FEEDCTL_CONFIG": str(from_env)})
    assert (settings.feed_cap, settings.config_file) == (8, from_env)


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_missing_named_file_is_an_error_even_when_others_exist(
    searched: list[Path], tmp_path: Path, how: str
) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        if how == "flag":
            load_settings(missing)
        else:
            load_settings(None, None, {"FEEDCTL_CONFIG": str(missing)})


def test_user_config_folder_defaults_to_dot_config(tmp_path: Path) -> None:
    path = tmp_path / "user" / ".config" / "feedctl" / "feedctl.toml"
    path.parent.mkdir(parents=True)
    _write(path, "feed_cap = 5\n")
    settings = load_settings(None, None, NO_ENV)
    assert (settings.feed_cap, settings.config_file) == (5, path)
    relative = {"XDG_CONFIG_HOME": "relative/dir"}  # not absolute: ignored, as XDG says
    assert load_settings(None, None, relative).config_file == path
    elsewhere = {"XDG_CONFIG_HOME": str(tmp_path / "empty")}
    assert load_settings(None, None, elsewhere).config_file is None


def test_a_malformed_searched_file_is_named(searched: list[Path]) -> None:
    searched[0].unlink()
    _write(searched[1], "feed_cap = = 2\n")
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_settings()
    assert str(searched[1]) in info.value.message


def test_config_file_is_absolute_and_not_a_key(workdir: Path) -> None:
    _write(workdir / "mine.toml", "feed_cap = 4\n")
    assert load_settings(Path("mine.toml"), None, NO_ENV).config_file == workdir / "mine.toml"
    _write(workdir / "bad.toml", 'config_file = "/elsewhere.toml"\n')
    with pytest.raises(ConfigError, match="unknown key 'config_file'"):
        load_settings(Path("bad.toml"), None, NO_ENV)
    assert load_settings(None, None, {"FEEDCTL_CONFIG_FILE": "/x.toml"}).config_file is None
    with pytest.raises(ConfigError, match="unknown setting 'config_file'"):
        load_settings(None, {"config_file": "/x.toml"}, NO_ENV)


def test_the_api_token_is_read_kept_out_of_repr_and_must_be_long(tmp_path: Path) -> None:
    token = "t" * 24
    settings = load_settings(None, environ={"FEEDCTL_API_TOKEN": token})
    assert settings.api_token == token
    assert token not in repr(settings)
    assert load_settings(None, environ={}).api_token is None
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings(None, environ={"FEEDCTL_API_TOKEN": "short"})
    config = tmp_path / "feedctl.toml"
    config.write_text('api_token = "short"\n')
    with pytest.raises(ConfigError, match="api_token"):
        load_settings(config, environ={})


@pytest.mark.parametrize("prefix", ["{feedctl}:", "app}:", "a{b:"])
def test_a_key_prefix_with_a_hash_tag_is_refused(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ConfigError, match="redis_key_prefix"):
        load_settings(None, None, {"FEEDCTL_REDIS_KEY_PREFIX": prefix})


def test_cache_state_ms_is_a_whole_number_from_zero() -> None:
    assert load_settings(None, None, {"FEEDCTL_CACHE_STATE_MS": "0"}).cache_state_ms == 0
    with pytest.raises(ConfigError, match="cache_state_ms"):
        load_settings(None, None, {"FEEDCTL_CACHE_STATE_MS": "-1"})
