"""Whether ``proute evaluate``'s split is held out from the router's training.

The router records the resolved config it was trained with (router.json ``config``). A
split drawn from other settings (another ``random_state``, ``split_ratio``, users or data)
can put the router's training queries into the evaluated split; :func:`training_overlap`
rebuilds the router's training table from that config (no text is encoded) and counts the
evaluated pairs whose query text the router trained on (its train split; val too, unless
val is what is evaluated: it chose the model). Every split is by query text
(:mod:`proute.data.splits`), so the text is the unit of the overlap.
"""

from __future__ import annotations

from typing import Any

_GROUPS = ("dataset", "users", "split")


class OverlapError(ValueError):
    """The evaluated split holds queries the router trained on (``proute evaluate`` refuses
    it unless ``--allow-overlap``)."""


def plain(node):
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _training_table(trained: dict, cfg, log):
    """The router's training table (split, not encoded) from its recorded groups; when the
    recorded data cannot be read here, the evaluated data with its recorded users and split."""
    from omegaconf import OmegaConf

    from proute.data.pipeline import prepare_from_config

    groups = {g: trained.get(g) for g in _GROUPS}
    try:
        return prepare_from_config(OmegaConf.create(groups), encode=False).table
    except (OSError, ValueError) as exc:
        log(
            f"note: cannot read the router's training data ({type(exc).__name__}: {exc}); "
            "checking the overlap on this data with the router's users and split"
        )
    groups["dataset"] = plain(cfg.get("dataset"))
    return prepare_from_config(OmegaConf.create(groups), encode=False).table


def training_overlap(router, cfg, split: str, pairs, log) -> dict[str, Any]:
    """``{"checked", "pairs", "queries", "of_pairs", "of_queries", "seen_splits"}``: how many
    of the evaluated ``pairs`` (columns ``query``) have a query text of the router's
    training; ``checked`` False (counts None) when the router records no training config."""
    trained = router.meta.get("config") or {}
    texts = pairs["query"].astype(str)
    out: dict[str, Any] = {"of_pairs": len(pairs), "of_queries": int(texts.nunique())}
    seen_splits = ["train"] if split == "val" else ["train", "val"]
    out["seen_splits"] = seen_splits
    if trained.get("split") is None:
        return {**out, "checked": False, "pairs": None, "queries": None}
    if all(plain(cfg.get(g)) == trained.get(g) for g in _GROUPS):
        return {**out, "checked": True, "pairs": 0, "queries": 0}  # the same split, by construction
    table = _training_table(trained, cfg, log)
    seen = set(table.loc[table["split"].isin(seen_splits), "query"].astype(str))
    hit = texts.isin(seen)
    return {**out, "checked": True, "pairs": int(hit.sum()), "queries": int(texts[hit].nunique())}


def overlap_message(overlap: dict, split: str, trained: dict, cfg) -> str:
    """The sentence naming the overlap and what differs from the router's training config."""
    seen = overlap["seen_splits"]
    what = f"{' and '.join(seen)} split{'s' if len(seen) > 1 else ''}"
    differs = [g for g in _GROUPS if plain(cfg.get(g)) != trained.get(g)]
    seed = trained.get("random_state"), cfg.get("random_state")
    where = f"; random_state {seed[0]} in training, {seed[1]} here" if seed[0] != seed[1] else ""
    return (
        f"{overlap['pairs']} of the {overlap['of_pairs']} (user, query) pairs of the {split!r} split "
        f"({overlap['queries']} of {overlap['of_queries']} query texts) are queries of the router's "
        f"{what}: the result is not held out ({', '.join(differs)} differ from the router's "
        f"training config{where})"
    )
