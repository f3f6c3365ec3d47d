"""Credentials out of everything we write: uris with user:password@ or signed-url parameters."""

from __future__ import annotations

import re
from typing import Optional

_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_SECRET_PARAM = re.compile(
    r"([?&][^=&#\s]*(?:signature|sig|token|secret|credential|accesskey|access_key|password|passwd)[^=&#\s]*=)"
    r"[^&#\s]*", re.IGNORECASE)


def redact(text: Optional[str]) -> Optional[str]:
    """text (a uri or a message holding one) with credentials replaced by ***."""
    if not text:
        return text
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))
