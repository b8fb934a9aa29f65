"""Where the keys that seal Clarity tokens come from: the setting, or the embedded key file.

``CLARITYCAST_SECRET_KEYS`` wins when it is set. Otherwise:

- on the embedded default (no ``CLARITYCAST_MONGODB_URL``) the keys are in
  ``<data_dir>/secret.key``, which `claritycast up` creates on its first start
  (mode 0600) and announces once; the worker it starts reads the same file;
- with an external MongoDB, an unset key is a start-up error naming the
  setting (for the workers that run the fetch stage, and the commands that
  store tokens): they may be on several machines and must share one key; a
  key made up by one of them would seal tokens the others cannot open.

Operator note: back the key up apart from the database. A backup of the
database without its key is useless to a thief, and so to you: tokens sealed
with a lost key must be given again (`claritycast projects set-token`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from claritycast.errors import ConfigError
from claritycast.keyring import SECRET_KEYS_SETTING, Keyring, new_key, parse_keys
from claritycast.logs import get_logger
from claritycast.settings import Settings

log = get_logger(__name__)

KEY_FILE_NAME = "secret.key"


def key_file(settings: Settings) -> Path:
    """The embedded default's key file, in the data folder."""
    return settings.data_dir / KEY_FILE_NAME


def keyring_for(settings: Settings, *, create: bool = False) -> Keyring:
    """The keyring these settings give; with ``create``, the embedded key file is made if missing.

    Raises `ConfigError` naming ``CLARITYCAST_SECRET_KEYS`` when there is no key.
    """
    if settings.secret_keys is not None:
        return parse_keys(settings.secret_keys.get_secret_value())
    if not settings.embedded_mongodb:
        raise ConfigError(
            SECRET_KEYS_SETTING,
            "not set: with an external MongoDB (CLARITYCAST_MONGODB_URL), the workers that "
            "fetch and the commands that store tokens must share the key that encrypts them; "
            "make one with `claritycast keys new` and give it to each",
        )
    path = key_file(settings)
    if create:
        _create_key_file(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            SECRET_KEYS_SETTING,
            f"not set, and there is no key file {path}: `claritycast up` creates it on its "
            "first start",
        ) from None
    except OSError as exc:
        raise ConfigError(
            SECRET_KEYS_SETTING, f"not set, and the key file {path} cannot be read ({exc})"
        ) from None
    _warn_if_readable_by_others(path)
    return parse_keys(text, source=f"the key file {path}")


def _create_key_file(path: Path) -> None:
    """Write a fresh key, readable by its owner only; nothing if the file exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as file:
        file.write(new_key() + "\n")
    log.warning(
        "keys.created",
        path=str(path),
        note="this key encrypts the stored Clarity tokens: back it up apart from the database, "
        "or set CLARITYCAST_SECRET_KEYS",
    )


def _warn_if_readable_by_others(path: Path) -> None:
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("keys.file_open_to_others", path=str(path), mode=oct(mode),
                        fix=f"chmod 600 {path}")  # fmt: skip
