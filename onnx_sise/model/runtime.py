"""Opening an ONNX model in onnxruntime safely, from a path or from bytes, and copying
the settings of a user's session into new ones.

The model file and its external data are read into memory and checked
(`files`, `external_data`), and onnxruntime gets those very bytes: it never opens or
memory-maps a file itself, so truncating the model or its weights after the session was
made cannot kill the next call with SIGBUS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from ..errors import ModelError
from .external_data import external_data_files, inlined_external_data, read_external_data
from .files import MAX_MODEL_BYTES, read_model_file

# onnxruntime's FATAL: its own log lines would add to the one-line error.
QUIET_LOG_SEVERITY = 4
# What onnxruntime raises: its own exception types (none derives from another) and RuntimeError.
RUNTIME_ERRORS = (RuntimeError, *(kind for kind in vars(ort_state).values()
                                  if isinstance(kind, type) and issubclass(kind, Exception)))

# SessionOptions fields an Explainer copies from a user's session; profiling and
# optimized_model_filepath are left out on purpose: they would write files.
SHARED_OPTIONS = ("intra_op_num_threads", "inter_op_num_threads", "execution_mode", "execution_order",
                  "graph_optimization_level", "enable_cpu_mem_arena", "enable_mem_pattern", "enable_mem_reuse",
                  "use_deterministic_compute", "use_per_session_threads", "log_severity_level")


def copied_options(theirs: ort.SessionOptions) -> ort.SessionOptions:
    """A fresh SessionOptions with the threading, optimisation and memory settings of
    `theirs` (config entries cannot be listed, so they are not copied)."""
    options = ort.SessionOptions()
    for name in SHARED_OPTIONS:
        setattr(options, name, getattr(theirs, name))
    return options


def copied_session_options(session: ort.InferenceSession) -> ort.SessionOptions:
    """A fresh SessionOptions with `session`'s threading, optimisation and memory settings."""
    return copied_options(session.get_session_options())


def providers_of(session: ort.InferenceSession) -> list[tuple[str, dict[str, str]]]:
    """`session`'s execution providers in order, each with its options."""
    options = session.get_provider_options()
    return [(name, dict(options.get(name, {}))) for name in session.get_providers()]


def open_session(source: Path | bytes, name: str, options: ort.SessionOptions,
                 providers: Sequence[str | tuple[str, dict]]) -> ort.InferenceSession:
    """An onnxruntime session of the model at `source` (a path or the file's bytes) that
    owns all its weights: the file and its external data are read here, checked, and
    handed to onnxruntime from memory: inlined into the model's bytes, or for a model of
    more than 2 GiB in a copy of `options` (so that `options` can serve another model)."""
    data, external = model_bytes(source, name)
    if external:  # too large for one protobuf: onnxruntime's in-memory files (not read by subgraphs)
        options = copied_options(options)
        options.add_external_initializers_from_files_in_memory(
            list(external), list(external.values()), [len(contents) for contents in external.values()])
    ort.set_default_logger_severity(QUIET_LOG_SEVERITY)
    try:
        return ort.InferenceSession(data, options, providers=list(providers))
    except Exception as exc:  # onnxruntime's own types, and ValueError for its providers
        raise ModelError(f"{name} is not a loadable ONNX model ({first_line(exc)})") from None


def model_bytes(source: Path | bytes, name: str) -> tuple[bytes, dict[str, bytes]]:
    """The model at `source` (a path or the file's bytes) as bytes with its external data
    inlined, and no external files; or, for a model of more than 2 GiB, its bytes as they
    are and the contents of its external data files (location -> bytes)."""
    data = source if isinstance(source, bytes) else read_model_file(source, name)
    files = external_data_files(data, None if isinstance(source, bytes) else source, name)
    if not files:
        return data, {}
    external = read_external_data(files, name)
    if len(data) + sum(len(contents) for contents in external.values()) <= MAX_MODEL_BYTES:
        return inlined_external_data(data, external, name), {}
    return data, external


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message, at most 200 characters (its type's name if it has none)."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
