"""The three calls the backend makes of vLLM itself; nothing else in the project imports vLLM.

`ASR_DISTILL_VLLM_ENGINE` names another module with the same three functions (the CPU test suite's
engine double, `tests/fake_vllm.py`); it is read wherever an engine starts, including the engine
server process, so the double reaches every process of a job.
"""

from __future__ import annotations

import importlib
import os

ENGINE_MODULE_ENV = "ASR_DISTILL_VLLM_ENGINE"


def start_engine(args: dict):
    """vLLM's synchronous LLMEngine (the engine `LLM.generate` steps), from engine arguments."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.llm_engine import LLMEngine

    return LLMEngine.from_engine_args(EngineArgs(**args), usage_context=UsageContext.LLM_CLASS)


def sampling_params(**kwargs):
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(output_kind=RequestOutputKind.FINAL_ONLY, **kwargs)


def shutdown(engine) -> None:
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def engine_module():
    """This module, or the one `ASR_DISTILL_VLLM_ENGINE` names."""
    name = os.environ.get(ENGINE_MODULE_ENV)
    return importlib.import_module(name) if name else importlib.import_module(__name__)
