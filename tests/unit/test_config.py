"""StoreSettings, sizes, addresses and the BLINKSTORE_* mapping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import blinkstore_gunicorn
from blinkstore_gunicorn.config import (
    SETTINGS,
    ConfigError,
    StoreSettings,
    TcpAddress,
    env_name,
    flag_name,
    format_size,
    human_size,
    parse_size,
    parse_tcp,
    unknown_variable_warnings,
    without_setting_variables,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1048576", 1048576),
        ("0", 0),
        ("64MB", 64 * 2**20),
        ("64mb", 64 * 2**20),
        ("64MiB", 64 * 2**20),
        ("64m", 64 * 2**20),
        ("1GiB", 2**30),
        ("1 GB", 2**30),
        ("1.5k", 1536),
        ("2KB", 2048),
        ("1TiB", 2**40),
        ("100B", 100),
        (" 7 ", 7),
        (4096, 4096),
    ],
)
def test_parse_size_uses_binary_multiples(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "64XB", "1.5", "0.3B", "1e3", "MB", True, -5])
def test_parse_size_rejects_garbage(text: str | int) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_format_size_round_trips_exact_multiples() -> None:
    assert format_size(64 * 2**20) == "64MiB"
    assert format_size(1000) == "1000B"
    assert format_size(0) == "0B"
    for n in (1, 1024, 3 * 2**30, 12345):
        assert parse_size(format_size(n)) == n


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9000", "127.0.0.1", 9000),
        ("localhost", "localhost", 8765),
        (":9001", "127.0.0.1", 9001),
        ("9002", "127.0.0.1", 9002),
        ("[::1]:9003", "::1", 9003),
        ("[::1]", "::1", 8765),
        ("::1", "::1", 8765),
        ("127.0.0.1:0", "127.0.0.1", 0),
    ],
)
def test_parse_tcp(text: str, host: str, port: int) -> None:
    assert parse_tcp(text) == TcpAddress(host, port)


@pytest.mark.parametrize("text", ["", "host:99999", "host:http", "[::1", "[::1]x"])
def test_parse_tcp_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_tcp(text)


def test_defaults() -> None:
    settings = StoreSettings()
    assert settings.memory_limit == 64 * 2**20
    assert settings.max_key_size == 64 * 1024
    assert settings.max_value_size == 16 * 2**20
    assert settings.max_connections == 10000
    # Nothing chosen: TCP on the Blink Store default address.
    assert settings.tcp_address == TcpAddress("127.0.0.1", 8765)
    assert StoreSettings(unix="/tmp/x.sock").tcp_address is None
    assert settings.request_size_limit >= settings.max_value_size + settings.max_key_size


def test_names_are_derived_from_fields() -> None:
    assert flag_name("memory_limit") == "--memory-limit"
    assert env_name("memory_limit") == "BLINKSTORE_MEMORY_LIMIT"
    fields = set(StoreSettings.__dataclass_fields__)
    assert {spec.name for spec in SETTINGS} == fields


def test_from_mapping_parses_every_kind() -> None:
    settings = StoreSettings.from_mapping(
        {
            "unix": "/tmp/s.sock",
            "tcp": "127.0.0.1:7000",
            "memory_limit": "256MB",
            "max_key_size": 100,
            "max_value_size": "1KiB",
            "max_connections": "50",
            "max_request_size": "2MB",
            "password": "pw",
            "log_level": "DEBUG",
        }
    )
    assert settings.unix == "/tmp/s.sock"
    assert settings.tcp == TcpAddress("127.0.0.1", 7000)
    assert settings.memory_limit == 256 * 2**20
    assert settings.max_key_size == 100
    assert settings.max_value_size == 1024
    assert settings.max_connections == 50
    assert settings.request_size_limit == 2 * 2**20
    assert settings.password == "pw"
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"memory_limit": "lots"}, "memory_limit"),
        ({"max_connections": "0"}, "max_connections"),
        ({"max_connections": "ten"}, "max_connections"),
        ({"log_level": "loud"}, "log_level"),
        ({"tcp": "host:http"}, "tcp"),
        ({"password": ""}, "password"),
        ({"unix": ""}, "unix"),
        ({"unix": "/tmp/" + "x" * 200}, "unix"),
        ({"max_request_size": "10"}, "max_request_size"),
        ({"pubsub_buffer_limit": "1KiB"}, "pubsub_buffer_limit"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_errors_name_the_setting(values: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        StoreSettings.from_mapping(values)
    assert info.value.setting == setting
    assert str(info.value).startswith(f"{setting}: ")


def test_none_values_mean_default() -> None:
    assert StoreSettings.from_mapping({"memory_limit": None}) == StoreSettings()


def test_non_loopback_tcp_needs_a_password() -> None:
    with pytest.raises(ConfigError, match="password") as info:
        StoreSettings.from_mapping({"tcp": "0.0.0.0:8765"})
    assert info.value.setting == "tcp"
    settings = StoreSettings.from_mapping({"tcp": "0.0.0.0:8765", "password": "s3cret"})
    assert settings.tcp == TcpAddress("0.0.0.0", 8765)
    # Loopback addresses in every spelling are fine without one.
    for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
        StoreSettings(tcp=TcpAddress(host, 1))


def test_env_values_and_flags_win() -> None:
    environ = {
        "BLINKSTORE_MEMORY_LIMIT": "1MB",
        "BLINKSTORE_UNIX": "/tmp/env.sock",
        "BLINKSTORE_LOG_LEVEL": "warning",
        "OTHER": "x",
    }
    settings = StoreSettings.from_env(environ, {"memory_limit": "2MB", "log_level": None})
    assert settings.memory_limit == 2 * 2**20
    assert settings.unix == "/tmp/env.sock"
    assert settings.log_level == "warning"


def test_bad_env_value_names_the_setting() -> None:
    with pytest.raises(ConfigError) as info:
        StoreSettings.from_env({"BLINKSTORE_MAX_VALUE_SIZE": "huge"})
    assert info.value.setting == "max_value_size"


def test_to_env_and_argv_round_trip() -> None:
    settings = StoreSettings.from_mapping(
        {"unix": "/tmp/a.sock", "memory_limit": "3MB", "password": "pw", "tcp": "[::1]:9"}
    )
    assert StoreSettings.from_env(settings.to_env()) == settings
    argv = settings.to_argv()
    assert "--password" not in argv
    assert argv[argv.index("--memory-limit") + 1] == str(3 * 2**20)
    with_password = settings.to_argv(include_password=True)
    flags = dict(zip(with_password[::2], with_password[1::2], strict=True))
    rebuilt = StoreSettings.from_mapping(
        {name[2:].replace("-", "_"): value for name, value in flags.items()}
    )
    assert rebuilt == settings
    assert StoreSettings().to_env() == {}


def test_describe_masks_the_password() -> None:
    described = StoreSettings(password="hunter2").describe()
    assert "hunter2" not in str(described)
    assert described["password"] == "set"
    assert described["memory_limit"] == "64MiB"
    assert StoreSettings(memory_limit=0).describe()["memory_limit"] == "unlimited"


def test_unknown_variables_name_the_closest_known_one() -> None:
    environ = {
        "BLINKSTORE_MEMORYLIMIT": "1GB",
        "BLINKSTORE_PASWORD": "x",
        "BLINKSTORE_ZZZ": "1",
        "BLINKSTORE_URL": "memory://",
        "BLINKSTORE_GUNICORN_CONFIG": "conf.py",
        "BLINKSTORE_MEMORY_LIMIT": "1GB",
        "HOME": "/root",
    }
    warnings = unknown_variable_warnings(environ)
    assert len(warnings) == 3
    assert warnings[0].startswith("BLINKSTORE_MEMORYLIMIT is not a blinkstore setting")
    assert warnings[0].endswith("(did you mean BLINKSTORE_MEMORY_LIMIT?)")
    assert warnings[1].endswith("(did you mean BLINKSTORE_PASSWORD?)")
    assert warnings[2].startswith("BLINKSTORE_ZZZ is not a blinkstore setting")
    assert "(known: " in warnings[2] and "BLINKSTORE_GUNICORN_CONFIG" in warnings[2]


def test_every_variable_the_package_reads_is_known() -> None:
    # A variable added to the code but not to the known lists would warn as a typo.
    package = Path(blinkstore_gunicorn.__file__).parent
    names = {
        name
        for source in package.rglob("*.py")
        for name in re.findall(r"\bBLINKSTORE_[A-Z][A-Z_]*[A-Z]\b", source.read_text())
    }
    assert "BLINKSTORE_SIGNING_KEY" in names
    assert unknown_variable_warnings(dict.fromkeys(names, "1")) == []


def test_a_child_store_inherits_no_settings_from_the_environment() -> None:
    environ = {
        "BLINKSTORE_MEMORY_LIMIT": "1GB",
        "BLINKSTORE_MEMORYLIMIT": "1GB",
        "BLINKSTORE_URL": "memory://",
        "PATH": "/bin",
    }
    assert without_setting_variables(environ) == {"BLINKSTORE_URL": "memory://", "PATH": "/bin"}


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (64 * 2**20, "64 MiB"), (3 * 2**40, "3 TiB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text
