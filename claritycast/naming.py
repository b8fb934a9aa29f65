"""Names made from what people type: ids for projects, organisations and connections."""

from __future__ import annotations

import re


def slug(text: str) -> str:
    """``"Acme Shop (EU)"`` -> ``"acme-shop-eu"``: lowercase, dashes, at most 40 characters."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:40] or "project"
