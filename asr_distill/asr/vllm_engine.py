"""The calls the backend makes of vLLM itself; nothing else in the project imports vLLM.

`ASR_DISTILL_VLLM_ENGINE` names another module with the same four functions (the CPU test suite's
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


def engine_error(engine):
    """Why the engine is dead, or None while it lives: one of vLLM's engine core processes has exited,
    or vLLM has marked the engine dead. Asked every fraction of a second by the loop's watchdog,
    because after such a death vLLM 0.26's `step()` never returns.

    Reads vLLM's multiprocess client (LLMEngine.engine_core: SyncMPClient) as 0.26 builds it; where
    that shape is not found it says nothing, and the stall watchdog still catches a dead engine."""
    resources = getattr(getattr(engine, "engine_core", None), "resources", None)
    manager = getattr(resources, "engine_manager", None)
    for proc in list(getattr(manager, "processes", None) or ()):
        code = proc.exitcode
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            return f"vLLM's engine core process {proc.pid} ({proc.name}) {how}"
    if getattr(resources, "engine_dead", False):
        return "vLLM reported its engine core dead"
    return None


def shutdown(engine) -> None:
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def engine_module():
    """This module, or the one `ASR_DISTILL_VLLM_ENGINE` names."""
    name = os.environ.get(ENGINE_MODULE_ENV)
    return importlib.import_module(name) if name else importlib.import_module(__name__)
