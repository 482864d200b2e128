"""Readers: turn each source format into a :class:`~proute.data.table.RoutingData`.

One module per source format, each with its ``read_*`` function (Hydra builds a reader from
``conf/dataset/<name>.yaml``, whose ``_target_`` names it through this package):

- :mod:`.llmrouter` — :func:`read_llmrouter`: the bundled dcrouter benchmark (default);
- :mod:`.nq` — :func:`read_nq`: LLMRouter's Natural Questions routing data;
- :mod:`.native` — :func:`read_table`: proute's own table as CSV, JSONL or Parquet;
- :mod:`.llmrouter_jsonl` — :func:`read_llmrouter_jsonl`: the LLMRouter library's JSONL;
- :mod:`.personalizedrouter_csv` — :func:`read_personalizedrouter_csv`: the paper's CSV.

What they share lives in :mod:`._io` (opening files, checking values) and :mod:`._tables`
(LLM and task tables, validation of the result). A new format is one new module here, one
line below, one ``conf/dataset/<name>.yaml`` and its tests.

Every reader returns a validated :class:`RoutingData` whose table has the columns
``query_id, query, task, llm, performance, cost`` (see :mod:`proute.data.table`), plus
``user_id`` only when the source has users and ``reward`` / ``split`` when the source has
them. Conventions shared by all readers:

- ``query_id`` is :func:`text_id` of the exact query text, so the same text gets the same
  id in every source and every run.
- Every error is a :class:`~proute.data.table.DataError` naming the file, the record / line /
  row / key, the field and what was expected, e.g.
  ``file data.jsonl, line 12: invalid JSON: Expecting ',' delimiter (column 40)``.
- The table's index says where a row came from: the 1-based line number for JSONL sources,
  the 1-based data row number for CSV and Parquet sources (the header is not counted), so the
  messages of :func:`~proute.data.table.validate_table` name the row of the file. Sources with
  one JSON record per *query* and several rows per record (the dcrouter files, the NQ file)
  are checked record by record while they are parsed (messages say ``record i``, 0-based, as
  a position in the JSON list) and get a plain unique ``RangeIndex``: a record index repeated
  on every LLM's row would make the index non-unique.
- The LLM and task tables hold exactly the LLMs and tasks of the routing table, sorted by
  name, so they do not depend on the order of rows in the file.
"""

from proute.data.readers._io import text_id
from proute.data.readers._tables import (
    TASK_DESCRIPTIONS,
    load_llm_catalogue,
    load_task_descriptions,
)
from proute.data.readers.llmrouter import DEFAULT_OUTPUT_TOKENS, read_llmrouter
from proute.data.readers.llmrouter_jsonl import read_llmrouter_jsonl
from proute.data.readers.native import NATIVE_SUFFIXES, read_table
from proute.data.readers.nq import read_nq
from proute.data.readers.personalizedrouter_csv import read_personalizedrouter_csv

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
