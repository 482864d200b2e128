"""Readers: turn each source format into a :class:`~proute.data.table.RoutingData`.

A package, so each source format can get its own module; for now everything is in
:mod:`proute.data.readers.llmrouter` and re-exported here, so the ``_target_`` paths
``proute.data.readers.read_*`` of ``conf/dataset/*.yaml`` keep working.
"""

from proute.data.readers.llmrouter import (
    DEFAULT_OUTPUT_TOKENS,
    NATIVE_SUFFIXES,
    TASK_DESCRIPTIONS,
    load_llm_catalogue,
    load_task_descriptions,
    read_llmrouter,
    read_llmrouter_jsonl,
    read_nq,
    read_personalizedrouter_csv,
    read_table,
    text_id,
)

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "NATIVE_SUFFIXES",
    "TASK_DESCRIPTIONS",
    "load_llm_catalogue",
    "load_task_descriptions",
    "read_llmrouter",
    "read_llmrouter_jsonl",
    "read_nq",
    "read_personalizedrouter_csv",
    "read_table",
    "text_id",
]
