"""Every config option with its default and description, as a commented YAML file."""

from __future__ import annotations

import textwrap
import typing

import yaml
from pydantic import BaseModel

from asr_distill.config import Config

HEADER = """\
# asr-distill config: every option, set to its default. Delete what you do not change; pass the file
# with --config=FILE. Sections: data (index, OSS, retries), audio (decode guards), vad, segmenting,
# inference (backend and model), writer (commits), filters (quality rules), metrics (Pushgateway).
"""


def _choices(annotation) -> list:
    """The allowed values of a Literal (also inside Optional)."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [c for arg in typing.get_args(annotation) for c in _choices(arg)]


def _scalar(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, 100 - len(indent) - 2)]


def _section(model: BaseModel, indent: str) -> list[str]:
    lines = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        note = field.description or ""
        choices = _choices(field.annotation)
        if choices:
            note = (note + " " if note else "") + "One of: " + ", ".join(_scalar(c) for c in choices) + "."
        lines += _comment(note, indent) if note else []
        if isinstance(value, BaseModel):
            lines.append(f"{indent}{name}:")
            lines += _section(value, indent + "  ")
        else:
            lines.append(f"{indent}{name}: {_scalar(value)}")
    return lines


def config_template() -> str:
    lines = [HEADER.rstrip()]
    defaults = Config()
    for name in Config.model_fields:
        section = getattr(defaults, name)
        lines += ["", f"{name}:"]
        doc = type(section).__doc__
        lines += _comment(" ".join(doc.split()), "  ") if doc else []
        lines += _section(section, "  ")
    return "\n".join(lines) + "\n"
