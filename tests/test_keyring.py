"""Sealing Clarity tokens: AES-GCM bound to the project, keys by id, and where keys come from."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

from claritycast.cli.main import cli
from claritycast.errors import (
    ConfigError,
    TokenForAnotherProject,
    TokenKeyMissing,
    TokenTampered,
)
from claritycast.keyfile import key_file, keyring_for
from claritycast.keyring import (
    KEY_PREFIX,
    Keyring,
    is_sealed,
    new_key,
    parse_key,
    parse_keys,
    project_tag,
    sealed_key_id,
)
from claritycast.redact import MASK, redact
from claritycast.settings import load_settings
from tests.helpers import make_token

TOKEN = make_token("project-1")


def substrings(secret: str, size: int = 12) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def test_a_sealed_token_opens_for_its_project_only_and_shows_nothing_of_it() -> None:
    """The round trip works; the sealed form names its key and holds no 12 characters of it."""
    keyring = parse_keys(new_key())
    sealed = keyring.seal(TOKEN, "shop-1")
    assert is_sealed(sealed)
    assert sealed_key_id(sealed) == keyring.writer.key_id
    assert not any(part in sealed for part in substrings(TOKEN))
    assert keyring.open(sealed, "shop-1") == TOKEN
    assert keyring.seal(TOKEN, "shop-1") != sealed, "a fresh nonce every time"


def test_several_keys_open_what_each_sealed_and_the_first_seals() -> None:
    """During a rotation the new key writes and the old one still reads."""
    old, new = new_key(), new_key()
    before = parse_keys(old)
    sealed_before = before.seal(TOKEN, "shop-1")
    during = parse_keys(f"{new}, {old}")
    assert during.writer.key_id == parse_key(new).key_id
    assert during.key_ids == (parse_key(new).key_id, parse_key(old).key_id)
    assert during.open(sealed_before, "shop-1") == TOKEN
    assert not during.is_current(sealed_before)
    sealed_during = during.seal(TOKEN, "shop-1")
    assert during.is_current(sealed_during)
    assert parse_keys(new).open(sealed_during, "shop-1") == TOKEN


def test_a_changed_ciphertext_is_tampered() -> None:
    """Any change to the ciphertext fails its authentication: a named error, not garbage."""
    keyring = parse_keys(new_key())
    sealed = keyring.seal(TOKEN, "shop-1")
    head, body = sealed.rsplit(":", 1)
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    for broken in (f"{head}:{flipped}", f"{head}:{body[:-4]}", f"{head}:{body}AAAA"):
        with pytest.raises(TokenTampered) as caught:
            keyring.open(broken, "shop-1")
        assert caught.value.kind == "tampered"
        assert caught.value.key_id == keyring.writer.key_id


def test_a_ciphertext_moved_to_another_project_does_not_open_there() -> None:
    """The project id is associated data: moved, it is another project's; re-tagged, tampered."""
    keyring = parse_keys(new_key())
    sealed = keyring.seal(TOKEN, "shop-1")
    with pytest.raises(TokenForAnotherProject) as caught:
        keyring.open(sealed, "blog-2")
    assert caught.value.kind == "another project's"
    version, key_id, _, body = sealed.split(":")
    retagged = f"{version}:{key_id}:{project_tag('blog-2')}:{body}"
    with pytest.raises(TokenTampered):
        keyring.open(retagged, "blog-2")


def test_a_token_sealed_with_a_key_not_held_names_that_key() -> None:
    """A dropped key is named by its id (never the key) and the setting to put it back in."""
    gone = parse_keys(new_key())
    sealed = gone.seal(TOKEN, "shop-1")
    with pytest.raises(TokenKeyMissing) as caught:
        parse_keys(new_key()).open(sealed, "shop-1")
    assert caught.value.key_id == gone.writer.key_id
    assert gone.writer.key_id in str(caught.value)
    assert "CLARITYCAST_SECRET_KEYS" in str(caught.value)


def test_something_that_was_never_sealed_is_refused() -> None:
    """A plain token where a sealed one belongs (or nothing) is not opened, it is tampered."""
    keyring = parse_keys(new_key())
    for text in (TOKEN, "", "cc1:only:three"):
        assert not is_sealed(text)
        with pytest.raises(TokenTampered) as caught:
            keyring.open(text, "shop-1")
        assert "not a sealed token" in str(caught.value)


def test_keys_parse_from_our_form_and_plain_base64() -> None:
    """`keys new` output and `openssl rand -base64 32` output are both keys; duplicates fold."""
    ours = new_key()
    assert ours.startswith(KEY_PREFIX) and len(ours) == len(KEY_PREFIX) + 43
    assert new_key() != ours
    raw = os.urandom(32)
    openssl = base64.b64encode(raw).decode()
    keyring = parse_keys(f"{ours},{openssl},{ours}")
    assert len(keyring.key_ids) == 2
    assert parse_key(openssl).material == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")).material == raw


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "holds no key"),
        (" , ", "holds no key"),
        ("not a key at all!", "key 1 of 1 is not base64"),
        (base64.b64encode(b"too short").decode(), "key 1 of 1 is 9 bytes, not 32"),
        (f"{new_key()},{base64.b64encode(os.urandom(16)).decode()}", "key 2 of 2 is 16 bytes"),
    ],
)
def test_a_bad_key_list_is_one_named_error_that_never_echoes_it(text: str, problem: str) -> None:
    """The error names the setting and the position, never the text that was given."""
    with pytest.raises(ConfigError) as caught:
        parse_keys(text)
    assert caught.value.setting == "CLARITYCAST_SECRET_KEYS"
    assert problem in str(caught.value)
    for part in filter(None, (p.strip() for p in text.split(","))):
        assert part not in str(caught.value)


def test_a_keyring_shows_key_ids_never_keys() -> None:
    """repr and str of keys and keyrings carry ids only."""
    key = new_key()
    keyring = parse_keys(key)
    shown = repr(keyring) + repr(keyring.writer) + str(keyring.writer)
    assert keyring.writer.key_id in shown
    assert key.removeprefix(KEY_PREFIX)[:12] not in shown


def test_keys_are_masked_in_logs_with_or_without_their_prefix() -> None:
    """A key is masked by its shape, and once parsed, also in its bare base64 form."""
    ours = new_key()
    assert ours not in redact(f"key is {ours}") and MASK in redact(f"key is {ours}")
    bare = base64.b64encode(os.urandom(32)).decode()
    parse_keys(bare)
    assert bare not in redact(f"CLARITYCAST_SECRET_KEYS was {bare}")


def test_an_invalid_setting_stops_start_up_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """CLARITYCAST_SECRET_KEYS is checked with the settings; the value is never repeated."""
    monkeypatch.setenv("CLARITYCAST_SECRET_KEYS", "hunter2hunter2")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith("invalid setting CLARITYCAST_SECRET_KEYS: key 1 of 1")
    assert "hunter2" not in str(caught.value)
    key = new_key()
    monkeypatch.setenv("CLARITYCAST_SECRET_KEYS", key)
    settings = load_settings()
    shown = dict((name, value) for name, value, _ in settings.described())
    assert shown["CLARITYCAST_SECRET_KEYS"] == "***"


def test_the_embedded_key_file_is_made_once_private_and_announced_once(tmp_path: Path) -> None:
    """`up` makes a 0600 key file on the first start only, and says so only then."""
    settings = load_settings(data_dir=tmp_path / "var")
    path = key_file(settings)
    with capture_logs() as first:
        made = keyring_for(settings, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry["event"] for entry in first] == ["keys.created"]
    assert str(path) == first[0]["path"]
    with capture_logs() as second:
        again = keyring_for(settings, create=True)
    assert second == []
    assert again.key_ids == made.key_ids
    assert keyring_for(settings).key_ids == made.key_ids, "a worker reads the same file"


def test_the_setting_wins_over_the_key_file(tmp_path: Path) -> None:
    """With CLARITYCAST_SECRET_KEYS set, no file is made or read."""
    key = new_key()
    settings = load_settings(data_dir=tmp_path / "var", secret_keys=key)
    assert keyring_for(settings, create=True).writer.key_id == parse_key(key).key_id
    assert not key_file(settings).exists()


def test_no_key_is_a_start_up_error_naming_the_setting(tmp_path: Path) -> None:
    """External MongoDB without a key: refused, saying why; embedded before `up`: says so."""
    external = load_settings(data_dir=tmp_path / "var", mongodb_url="mongodb://db:27017")
    with pytest.raises(ConfigError) as caught:
        keyring_for(external, create=True)
    assert caught.value.setting == "CLARITYCAST_SECRET_KEYS"
    assert "external MongoDB" in str(caught.value) and "keys new" in str(caught.value)
    assert not key_file(external).exists(), "no key is made up for an external database"
    embedded = load_settings(data_dir=tmp_path / "other")
    with pytest.raises(ConfigError, match="creates it on its first start"):
        keyring_for(embedded)


def test_a_keyring_needs_a_key() -> None:
    """An empty keyring is refused rather than sealing with nothing."""
    with pytest.raises(ConfigError):
        Keyring([])


def test_keys_new_prints_one_fresh_key_and_stores_nothing(tmp_path: Path) -> None:
    """`claritycast keys new` needs no server and no setting: one key per line, new each time."""
    first = CliRunner().invoke(cli, ["keys", "new"], env={"CLARITYCAST_DATA_DIR": str(tmp_path)})
    second = CliRunner().invoke(cli, ["keys", "new"], env={"CLARITYCAST_DATA_DIR": str(tmp_path)})
    assert first.exit_code == second.exit_code == 0
    assert first.stdout != second.stdout
    assert len(parse_keys(first.stdout).key_ids) == 1
    assert list(tmp_path.iterdir()) == []
