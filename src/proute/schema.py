"""The routing graph's schema: node types, relations and canonical edge types (DGL-free).

One place for the names the graph builder, the masking strategies, the GNN and the router
share (docs/DESIGN.md §2, "The graph"). Code that needs the relations of a *particular* graph
takes them from the graph (``g.canonical_etypes``); this module says what they mean.

>>> [rel for _, rel, _ in canonical_etypes(users=True, tasks=False)]
['answers', 'answered_by', 'asked_by', 'asks']
>>> is_outcome(ANSWERED_BY), is_outcome(ASKS)
(True, False)
"""

from __future__ import annotations

USER, QUERY, TASK, LLM = "user", "query", "task", "llm"
NODE_TYPES = (USER, QUERY, TASK, LLM)

# Outcome relations: one edge per observed (train query node, LLM), carrying edge features.
ANSWERED_BY = (QUERY, "answered_by", LLM)
ANSWERS = (LLM, "answers", QUERY)
# Context relations: a user asks its query nodes, a task contains them.
ASKS = (USER, "asks", QUERY)
CONTAINS = (TASK, "contains", QUERY)
# Reverse context relations: only *train* query nodes send to their user and task, so a
# val/test/new query node is a receiver only (it influences no other node).
ASKED_BY = (QUERY, "asked_by", USER)
BELONGS_TO = (QUERY, "belongs_to", TASK)
# LLMs of one family (optional).
SAME_FAMILY = (LLM, "same_family", LLM)

OUTCOME_RELATIONS = (ANSWERED_BY[1], ANSWERS[1])
QUERY_SENDER_RELATIONS = (ASKED_BY[1], BELONGS_TO[1])

EDGE_FEATURES = ("reward", "performance")  # what a 1-dimensional outcome edge carries
USER_FEATURES = ("learned", "onehot", "history")  # how user nodes get their input state
#: What routing does with a user id the router does not know (``PersonalizedRouter.unknown_user``):
#: its home is here, torch-free, so that ``proute --help`` can list the choices cheaply.
UNKNOWN_USER_ERROR, UNKNOWN_USER_AVERAGE = "error", "average"
UNKNOWN_USER_POLICIES = (UNKNOWN_USER_ERROR, UNKNOWN_USER_AVERAGE)


def is_outcome(etype) -> bool:
    """Whether ``etype`` (a relation name or a canonical triple) is an outcome relation."""
    rel = etype[1] if isinstance(etype, tuple) else etype
    return rel in OUTCOME_RELATIONS


def canonical_etypes(
    users: bool = True, tasks: bool = True, family: bool = False
) -> list[tuple[str, str, str]]:
    """The canonical edge types :func:`proute.graph.build_graph` creates, sorted."""
    et = [ANSWERED_BY, ANSWERS]
    if users:
        et += [ASKS, ASKED_BY]
    if tasks:
        et += [CONTAINS, BELONGS_TO]
    if family:
        et += [SAME_FAMILY]
    return sorted(et)
