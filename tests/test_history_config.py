"""``[history]`` and ``[server] control`` in config.ini."""

from __future__ import annotations

import pytest

from octolux.config.ini import (
    HISTORY_MAX_SIZE,
    ConfigError,
    HistoryConfig,
    mask_postgres_uri,
    parse_config,
)

LXP = "[lxp]\nhost = 192.168.0.10\nserial = 0123456789\ndatalog = BA12345678\n"


@pytest.fixture
def history(tmp_path):
    """Parse ``[lxp]`` + ``text`` as if read from a config.ini in a temporary directory."""
    return lambda text: parse_config(LXP + text, str(tmp_path / "config.ini")).history


def test_a_config_of_the_original_tool_records_nothing():
    assert parse_config(LXP + "[server]\nport = 4346\n").history is None


def test_a_history_section_alone_means_sqlite_beside_the_config_file(history, tmp_path):
    config = history("[history]\n")
    assert config == HistoryConfig(path=str(tmp_path / "octolux-history.sqlite"))
    assert config.retention == 365 * 86400
    assert config.max_size == HISTORY_MAX_SIZE


def test_every_key(history, tmp_path):
    config = history(
        f"[history]\npath = {tmp_path}/h.db\nretention = 30\nmax_size = 500M\n"
        "uri = postgresql://octolux:s3cret@127.0.0.1:5432/octolux\n"
    )
    assert config.path == f"{tmp_path}/h.db"
    assert config.uri == "postgresql://octolux:s3cret@127.0.0.1:5432/octolux"
    assert (config.retention, config.max_size) == (30 * 86400, 500 << 20)
    assert "s3cret" not in repr(config)


def test_a_uri_alone_means_postgresql_only(history):
    config = history("[history]\nuri = postgresql://127.0.0.1/octolux\n")
    assert (config.path, config.uri) == (None, "postgresql://127.0.0.1/octolux")


def test_enabled_no_turns_it_off(history):
    assert history("[history]\nenabled = no\n") is None


@pytest.mark.parametrize(("text", "message"), [
    ("retention = forever", "[history] retention: not a number of days (0: keep all): 'forever'"),
    ("retention = -1", "[history] retention: not a number of days"),
    ("max_size = lots", "[history] max_size: not a size (like 500M or 2G): 'lots'"),
    ("path = /no/such/dir/h.db", "[history] path: its directory does not exist"),
    ("uri = mysql://u:pw@host/db",
     "[history] uri: scheme must be postgresql://: 'mysql://***@host/db'"),
    ("uri = postgresql://u:pw@host:99999/db", "[history] uri: not a valid URI: "),
    ("path =", "[history] path: empty, and no uri either"),
    ("enabled = maybe", "[history] enabled: not yes/no"),
])
def test_mistakes_stop_start_up_with_one_line(history, tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        history(f"[history]\n{text}\n")
    assert message in str(error.value)
    assert str(error.value).startswith(f"{tmp_path}/config.ini: ")
    assert "pw" not in str(error.value)


def test_the_password_never_shows_in_the_uri_for_the_log():
    assert mask_postgres_uri("postgresql://octolux:s3cret@db:5432/x") == "postgresql://***@db:5432/x"
    assert mask_postgres_uri("postgresql://db/x?user=o&password=s3cret&sslmode=require") == (
        "postgresql://db/x?user=o&password=***&sslmode=require"
    )


def test_control_is_off_unless_asked_for():
    assert parse_config(LXP).server.control is False
    assert parse_config(LXP + "[server]\ncontrol = yes\n").server.control is True


@pytest.mark.parametrize("name", ["history", "state", "events", "command"])
def test_the_api_s_own_names_cannot_name_an_inverter(name):
    with pytest.raises(ConfigError, match="a name the HTTP API uses itself"):
        parse_config(LXP + f"name = {name}\n")
