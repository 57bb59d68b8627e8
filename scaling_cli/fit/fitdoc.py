"""Open a fit.json: the file's errors (missing, unreadable, not JSON) as one line, its fields checked by
`results.FitResult.from_json`, the one reader of the document."""

from __future__ import annotations

import json
from pathlib import Path

from scaling_cli.errors import FitError
from scaling_cli.fit.results import FitResult


def load_fit(path) -> FitResult:
    """Read and check a fit.json (or the fit.json of a results directory); FitError when missing or damaged."""
    path = Path(path)
    if path.is_dir():
        path = path / "fit.json"
    if not path.is_file():
        raise FitError(str(path), "", "no such fit file; run `scale fit` first")
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise FitError(str(path), "", f"cannot read fit file: {exc}") from None
    return FitResult.from_json(document, str(path))
