"""SecantusDB's own command line, started with its TTL sweeper off.

SecantusDB's server can run without its TTL sweeper (``ttl_sweep_seconds=0``)
but its command line never passes that setting on (its config file reads
it, its ``main`` drops it). `up` runs the embedded database through this
module instead of ``python -m secantus``, with the same arguments, so that
expiry is `claritycast.runtime.database_expiry`'s, through the indexes; why
is said there.
"""

from __future__ import annotations

import functools
import sys

from secantus import cli


def main(argv: list[str] | None = None) -> int:
    """``python -m secantus``'s main, its server made without the TTL sweeper."""
    cli.SecantusDBServer = functools.partial(cli.SecantusDBServer, ttl_sweep_seconds=0)  # type: ignore[misc]
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
