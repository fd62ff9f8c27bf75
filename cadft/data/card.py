"""The data card of a prepared table: counts per split, the task's settings, follow-up, missingness and special answers
per feature, token lengths of the records; and its summary as printed by `cadft prepare`."""

from __future__ import annotations

import numpy as np
import polars as pl

from cadft.config.schema import Config
from cadft.config.typecheck import plain
from cadft.data.cache import Prepared
from cadft.data.features import SPECIAL_SUFFIX
from cadft.data.followup import COMPETING_DEATH, EVENT, NO_EVENT, STATUS, TIME
from cadft.data.ipcw import censored_before
from cadft.data.split import SPLITS

TOKEN_SAMPLE = 20_000  # records tokenized for the data card's length percentiles
TASK_CARD_KEYS = (
    "name",
    "description",
    "outcome",
    "horizon_years",
    "censor_dates",
    "censoring",
    "competing_death",
    "history_codes",
    "history_policy",
)


def special_answers(table: pl.DataFrame, features: list) -> dict:
    """Per numeric feature, how often each special answer (Do not know, ...) was given instead of a number."""
    counts = {}
    for feature in features:
        column = feature.name + SPECIAL_SUFFIX
        if column in table.columns and table[column].null_count() < table.height:
            counts[feature.name] = dict(table[column].drop_nulls().value_counts(sort=True).iter_rows())
    return counts


def followup_counts(table: pl.DataFrame, horizon: float) -> dict:
    """How the included participants' follow-up ended (incident outcomes): events, competing deaths, censored before
    the horizon (kept only under task.censoring control or ipcw; cohort_steps has their reasons), the horizon reached
    event-free; median follow-up and person-years."""
    time, status = table[TIME].to_numpy(), table[STATUS].to_numpy()
    censored = censored_before(time, status, horizon)
    return {
        "horizon_years": horizon,
        "participants": table.height,
        "events": int((status == EVENT).sum()),
        "competing_deaths": int((status == COMPETING_DEATH).sum()),
        "censored_before_horizon": int(censored.sum()),
        "reached_horizon": int(((time >= horizon) & (status == NO_EVENT)).sum()),
        "median_years": round(float(np.median(time)), 3) if time.size else None,
        "person_years": round(float(time.sum()), 1),
    }


def describe(table: pl.DataFrame, feature_names: list[str], config: Config) -> dict:
    splits = {}
    for name in SPLITS:
        part = table.filter(pl.col("split") == name)
        cases = int(part["label"].sum())
        splits[name] = {"n": part.height, "cases": cases, "prevalence": round(cases / max(part.height, 1), 5)}
    cases = int(table["label"].sum())
    seed_json = config.data.format == "seed_json"
    task = plain(config.task)
    return {
        "task": {"name": "seed_json"} if seed_json else {key: task[key] for key in TASK_CARD_KEYS},
        "included": table.height,
        "cases": cases,
        "prevalence": round(cases / table.height, 5),
        "splits": splits,
        "missingness": {name: round(table[name].null_count() / table.height, 5) for name in feature_names},
        "text": {
            "template": "seed_json" if seed_json else config.text.name,
            "tokens": token_lengths(table["text"], config),
        },
    }


def token_lengths(texts: pl.Series, config: Config) -> dict:
    from cadft.train.backbone import load_tokenizer  # transformers is slow to import; only this step needs it

    tokenizer = load_tokenizer(config.backbone, config.paths.cache_dir)
    sample = texts.sample(min(TOKEN_SAMPLE, texts.len()), seed=config.seed).to_list()
    lengths = np.array([len(ids) for ids in tokenizer(sample)["input_ids"]])
    percentiles = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)}
    return {
        "tokenizer": config.backbone.name,
        "sampled": len(sample),
        "mean": round(float(lengths.mean()), 1),
        **percentiles,
        "max": int(lengths.max()),
    }


def summary_lines(prepared: Prepared) -> list[str]:
    card = prepared.card
    lines = [
        f"prepared table: {prepared.table_path}",
        f"data card:      {prepared.card_path}",
        f"included {card['included']} participants, {card['cases']} cases ({card['prevalence']:.2%})",
    ]
    if card["exclusions"]:
        lines.append("excluded: " + ", ".join(f"{k} {v}" for k, v in card["exclusions"].items()))
    kept_by_policy = [
        f"{s['step']} {s['participants']} ({s['policy']})"
        for s in card.get("cohort_steps", [])
        if s.get("participants") and "policy" in s and not s["excluded"]
    ]
    if kept_by_policy:
        lines.append("kept by task policy: " + ", ".join(kept_by_policy))
    lines += [
        f"  {name:<10} n={s['n']:<7} cases={s['cases']:<6} prevalence={s['prevalence']:.2%}"
        for name, s in card["splits"].items()
    ]
    if "followup" in card:
        f = card["followup"]
        lines.append(
            f"follow-up to {f['horizon_years']:g} years: {f['events']} events, {f['competing_deaths']} competing "
            f"deaths, {f['censored_before_horizon']} censored before the horizon, {f['reached_horizon']} reached it "
            f"event-free (median {f['median_years']:g} years)"
        )
    if "history" in card:
        written = ", ".join(f"{source} {count}" for source, count in card["history"]["items_written"].items())
        lines.append(
            f"history (text.history=on): {card['history']['participants_with_history']} participants with "
            f"items; items {written}"
        )
    tokens = card["text"]["tokens"]
    lines.append(
        f"tokens per record ({tokens['tokenizer']}): median {tokens['p50']}, p95 {tokens['p95']}, max {tokens['max']}"
    )
    return lines
