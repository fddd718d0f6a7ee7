"""Reading one JSON document from a file, with the one-line causes the CLI shows for a file
that cannot be read or is not JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources.abc import Traversable
from typing import Any

from hwledger.schemas.errors import UserError


def read_json(path: Traversable, error: Callable[[str], Exception] = UserError) -> Any:
    """The document in `path` (UTF-8 JSON); else `error("cannot read: ...")` or
    `error("not valid JSON: ...")`, raised without the decoder's traceback."""
    try:
        return json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"not valid JSON: {exc}") from None
