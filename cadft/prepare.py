"""cadft-prepare: extract -> labels -> baseline features -> text -> split, as Parquet plus a data card.

    cadft-prepare data.path=FILE [data.format=auto|showcase|tab|rap|parquet|seed_json] [task=hard_cad]
                  [text=text|list] [paths.prepared_dir=DIR]

Participants in `data.withdrawals` (UK Biobank's file of withdrawn eids) and negative eids are dropped as the
extract is read, before anything else; the data card counts them (input.withdrawn, input.negative_eids).
`text.history=on` adds the medical history before baseline to each record (cadft/history.py) and a `history` column
(the items written, for the baselines' indicator columns). The result is cached under `paths.prepared_dir` by a hash of the input file's identity (path, size,
modification time), the withdrawals file's content and the data, task and text config, so a sweep prepares
once. The table has `eid, label, split, text` and one column per feature; the data card (JSON) has counts, exclusions,
cohort_steps,
prevalence per split, missingness and special answers per feature, parse problems and token-length percentiles.
Output is written to a temporary folder and renamed, so a failure leaves nothing half-written; a manifest
written last holds the size and SHA-256 of both files, and an entry that does not match it (a truncated copy,
a damaged disk) is logged and built again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import hydra
import numpy as np
import polars as pl
from omegaconf import DictConfig, OmegaConf

from cadft.cli import CONF_DIR, absolute_paths, check_command_line, exit_on_user_error, quote_stage_choices
from cadft.config import validate
from cadft.errors import CadftError
from cadft.features import (SPECIAL_SUFFIX, build_features, check_no_leakage, check_no_treatment_proxies, fallback_fields, parse_features,
                            required_fields)
from cadft.followup import cohort_steps
from cadft.history import HISTORY_COLUMN, build_history, history_fields
from cadft.task import OPTIONAL_FIELDS, Definition, label
from cadft.split import SPLITS, place_of, split_cohort
from cadft.progress import progress
from cadft.text import render_texts
from cadft.tracking import check_writable
from cadft.ukb.read import read_extract
from cadft.ukb.registry import load_registry
from cadft.ukb.seed_json import read_seed_json
from cadft.ukb.centres import CENTRE_FIELD
from cadft.ukb.withdrawals import content_digest, drop_withdrawn, kept, read_withdrawals

log = logging.getLogger(__name__)
PREPARE_VERSION = 3  # bump when the prepared table changes for the same input and config (2: NaN and special codes; 3: split by
# eid hash only, follow-up rules and cohort_steps)
TOKEN_SAMPLE = 20_000  # records tokenized for the data card's length percentiles
TASK_CARD_KEYS = ("name", "description", "outcome", "horizon_years", "censor_dates", "censoring", "competing_death", "history_codes",
                  "history_policy")


@dataclass(frozen=True)
class Prepared:
    directory: Path
    key: str

    @property
    def table_path(self) -> Path:
        return self.directory / "data.parquet"

    @property
    def card_path(self) -> Path:
        return self.directory / "data_card.json"

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST

    def table(self) -> pl.DataFrame:
        return pl.read_parquet(self.table_path)

    @cached_property
    def card(self) -> dict:
        return json.loads(self.card_path.read_text())

    def damage(self) -> str | None:
        """Why this cache entry cannot be used, or None when its files match the manifest."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
            recorded = {name: manifest["files"][name] for name in (self.table_path.name, self.card_path.name)}
        except FileNotFoundError:
            return f"{MANIFEST} is missing"
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"{MANIFEST} is unreadable ({type(err).__name__}: {err})"
        for name, expected in recorded.items():
            path = self.directory / name
            if not path.is_file():
                return f"{name} is missing"
            if _digest(path) != expected:
                return f"{name} does not match its size and SHA-256 in {MANIFEST}"
        return None


MANIFEST = "manifest.json"


def _digest(path: Path) -> dict:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
    return {"bytes": path.stat().st_size, "sha256": sha.hexdigest()}


def prepare(cfg: DictConfig) -> Prepared:
    """The prepared table for this config: from the cache, or built now."""
    read_withdrawals(cfg.data.get("withdrawals"))  # a bad file is refused before the cache or the extract is looked at
    key = cache_key(cfg)
    root = Path(cfg.paths.prepared_dir).resolve()
    prepared = Prepared(root / f"{_slug(cfg)}-{key[:12]}", key)
    if prepared.directory.exists():
        problem = prepared.damage()
        if problem is None:
            log.info("prepared data from cache: %s", prepared.directory)
            return prepared
        log.warning("prepared data in %s is damaged (%s): building it again", prepared.directory, problem)
    check_writable(root, "prepared data folder (paths.prepared_dir)", create=False)  # before the extract is read
    table, card = build(cfg)
    card["cache_key"] = key
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        table.write_parquet(staging / prepared.table_path.name)
        (staging / prepared.card_path.name).write_text(json.dumps(card, indent=2) + "\n")
        files = {name: _digest(staging / name) for name in (prepared.table_path.name, prepared.card_path.name)}
        (staging / MANIFEST).write_text(json.dumps({"cache_key": key, "files": files}, indent=2) + "\n")
        _install(staging, prepared)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return prepared


def _install(staging: Path, prepared: Prepared) -> None:
    """Rename the finished staging folder into place; a damaged entry there is moved aside first."""
    if prepared.directory.exists():
        aside = Path(tempfile.mkdtemp(prefix=".damaged-", dir=prepared.directory.parent))
        try:
            prepared.directory.rename(aside / prepared.directory.name)
        except FileNotFoundError:  # another process moved it already
            pass
        shutil.rmtree(aside, ignore_errors=True)
    try:
        staging.rename(prepared.directory)
    except OSError:  # another process (a sweep job, a rank) finished the same key first
        if prepared.damage() is not None:
            raise


def cache_key(cfg: DictConfig) -> str:
    path = Path(cfg.data.path).resolve()
    if not path.is_file():
        raise CadftError(f"data.path={cfg.data.path}: no such file")
    stat = path.stat()
    identity = {
        "version": PREPARE_VERSION,
        "file": [str(path), stat.st_size, stat.st_mtime_ns],
        "withdrawals": content_digest(cfg.data.get("withdrawals")),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "text": OmegaConf.to_container(cfg.text, resolve=True),
        "tokenizer": OmegaConf.to_container(cfg.backbone, resolve=True),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _slug(cfg: DictConfig) -> str:
    return "seed_json" if cfg.data.format == "seed_json" else str(cfg.task.name)


def build(cfg: DictConfig) -> tuple[pl.DataFrame, dict]:
    steps = progress(total=5, desc="prepare", unit="step")
    withdrawn = read_withdrawals(cfg.data.get("withdrawals"))
    if cfg.data.format == "seed_json":
        steps.set_postfix_str("reading seed JSON")
        table = read_seed_json(cfg.data.path, text_key=cfg.data.text_key, label_key=cfg.data.label_key,
                               id_key=cfg.data.id_key, encoding=cfg.data.encoding)
        keep, removed = kept(table["eid"], withdrawn)
        card = {"input": {"format": "seed_json", "rows": table.height, **removed}, "exclusions": {}, "features": []}
        table = table.filter(keep)
        features, places = [], None
        steps.update(3)
    else:
        definition = Definition.from_config(cfg.task)
        features = parse_features(cfg.data.features)
        check_no_leakage(features, definition)
        check_no_treatment_proxies(features, definition, bool(cfg.data.get("allow_treatment_features", False)))
        by_place = cfg.data.split.get("by", "eid") != "eid"
        with_history = cfg.text.history == "on"
        steps.set_postfix_str("reading extract")
        extract = read_extract(
            cfg.data.path,
            definition.required_fields() + required_fields(features) + ([CENTRE_FIELD] if by_place else []),
            optional_ids=(*OPTIONAL_FIELDS, *fallback_fields(features), *(history_fields() if with_history else ())),
            fmt=cfg.data.format,
            max_bad_fraction=float(cfg.data.max_bad_fraction),
            encoding=cfg.data.encoding,
        )
        extract, removed = drop_withdrawn(extract, withdrawn)  # before anything else reads them
        places = place_of(extract.scalars, cfg.data.split.by) if by_place else None
        steps.update()
        steps.set_postfix_str("labelling")
        labels = label(extract, definition)
        steps.update()
        steps.set_postfix_str("features and text")
        table = labels.filter(pl.col("included")).select("eid", "label").join(build_features(extract, features), on="eid", how="left")
        history_card = None
        if with_history:
            history, history_card = build_history(extract, definition, int(cfg.text.history_max_items))
            table = table.join(history, on="eid", how="left")
        table = table.with_columns(render_texts(table, features, cfg.text))
        steps.update()
        card = {
            "input": {"format": extract.naming, "rows": extract.n + sum(removed.values()), **removed,
                      "absent_optional_fields": extract.absent_optional},
            "exclusions": dict(labels.filter(~pl.col("included")).group_by("exclusion").len().sort("exclusion").iter_rows()),
            "cohort_steps": cohort_steps(labels, definition.outcome, definition.policies(), load_registry()[190].labels),
            "special_answers": _special_answers(table, features),
            "parse_problems": {"bad_values_set_missing": extract.bad_values, "labels_outside_registry": extract.unmapped_labels},
            "features": [f.name for f in features],
        }
        if history_card is not None:
            card["history"] = history_card
    if table.height == 0 or int(table["label"].sum()) == 0:
        raise CadftError(
            f"{cfg.data.path}: the cohort has {table.height} participants and no cases of task {cfg.task.name} after "
            f"exclusions {card['exclusions']}; check the extract's outcome fields and task.definition"
        )
    steps.set_postfix_str("splitting")
    splits, card["split"] = split_cohort(table, cfg.data.split, places)
    table = table.with_columns(splits)
    table = table.select("eid", "label", "split", "text", *[f.name for f in features], *[HISTORY_COLUMN] * (HISTORY_COLUMN in table.columns)).sort("eid")
    steps.update()
    steps.set_postfix_str("token lengths")
    card.update(_describe(table, [f.name for f in features], cfg))
    steps.update()
    steps.close()
    return table, card


def records_from_extract(data_cfg, text_cfg, task_cfg, withdrawals: Path | None = None) -> pl.DataFrame:
    """eid and text of every participant of an extract, without labels: how cadft-predict builds the records of
    new people exactly as a run built its own (the run's data.features, text and task config: the history leaves out
    the task's outcome codes). Participants in the run's data.withdrawals or in `withdrawals`, and negative eids, are
    dropped first."""
    features = parse_features(data_cfg.features)
    with_history = text_cfg.get("history") == "on"
    withdrawn = read_withdrawals(data_cfg.get("withdrawals")) | read_withdrawals(withdrawals)
    extract = read_extract(data_cfg.path, required_fields(features), fmt=data_cfg.format, max_bad_fraction=float(data_cfg.max_bad_fraction),
                           optional_ids=(*fallback_fields(features), *(history_fields() if with_history else ())), encoding=data_cfg.encoding)
    extract, _ = drop_withdrawn(extract, withdrawn)
    table = build_features(extract, features)
    if with_history:
        table = table.join(build_history(extract, Definition.from_config(task_cfg), int(text_cfg.history_max_items))[0], on="eid", how="left")
    return table.select("eid", render_texts(table, features, text_cfg)).sort("eid")


def _special_answers(table: pl.DataFrame, features: list) -> dict:
    """Per numeric feature, how often each special answer (Do not know, ...) was given instead of a number."""
    counts = {}
    for feature in features:
        column = feature.name + SPECIAL_SUFFIX
        if column in table.columns and table[column].null_count() < table.height:
            counts[feature.name] = dict(table[column].drop_nulls().value_counts(sort=True).iter_rows())
    return counts


def _describe(table: pl.DataFrame, feature_names: list[str], cfg: DictConfig) -> dict:
    splits = {}
    for name in SPLITS:
        part = table.filter(pl.col("split") == name)
        cases = int(part["label"].sum())
        splits[name] = {"n": part.height, "cases": cases, "prevalence": round(cases / max(part.height, 1), 5)}
    cases = int(table["label"].sum())
    return {
        "task": {k: OmegaConf.to_container(v) if OmegaConf.is_config(v := cfg.task.get(k)) else v for k in TASK_CARD_KEYS}
        if cfg.data.format != "seed_json" else {"name": "seed_json"},
        "included": table.height,
        "cases": cases,
        "prevalence": round(cases / table.height, 5),
        "splits": splits,
        "missingness": {name: round(table[name].null_count() / table.height, 5) for name in feature_names},
        "text": {"template": cfg.text.name if cfg.data.format != "seed_json" else "seed_json", "tokens": _token_lengths(table["text"], cfg)},
    }


def _token_lengths(texts: pl.Series, cfg: DictConfig) -> dict:
    from cadft.backbone import load_tokenizer  # transformers is slow to import; only this step needs it

    tokenizer = load_tokenizer(cfg.backbone, cfg.paths.cache_dir)
    sample = texts.sample(min(TOKEN_SAMPLE, texts.len()), seed=int(cfg.seed)).to_list()
    lengths = np.array([len(ids) for ids in tokenizer(sample)["input_ids"]])
    percentiles = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)}
    return {"tokenizer": str(cfg.backbone.name), "sampled": len(sample), "mean": round(float(lengths.mean()), 1), **percentiles, "max": int(lengths.max())}


def summary_lines(prepared: Prepared) -> list[str]:
    card = prepared.card
    lines = [f"prepared table: {prepared.table_path}", f"data card:      {prepared.card_path}",
             f"included {card['included']} participants, {card['cases']} cases ({card['prevalence']:.2%})"]
    if card["exclusions"]:
        lines.append("excluded: " + ", ".join(f"{k} {v}" for k, v in card["exclusions"].items()))
    kept_by_policy = [f"{s['step']} {s['participants']} ({s['policy']})" for s in card.get("cohort_steps", [])
                      if s.get("participants") and "policy" in s and not s["excluded"]]
    if kept_by_policy:
        lines.append("kept by task policy: " + ", ".join(kept_by_policy))
    lines += [f"  {name:<10} n={s['n']:<7} cases={s['cases']:<6} prevalence={s['prevalence']:.2%}" for name, s in card["splits"].items()]
    if "history" in card:
        written = ", ".join(f"{source} {count}" for source, count in card["history"]["items_written"].items())
        lines.append(f"history (text.history=on): {card['history']['participants_with_history']} participants with items; items {written}")
    tokens = card["text"]["tokens"]
    lines.append(f"tokens per record ({tokens['tokenizer']}): median {tokens['p50']}, p95 {tokens['p95']}, max {tokens['max']}")
    return lines


def main() -> None:
    quote_stage_choices(sys.argv)
    check_command_line("cadft-prepare", "prepare", sys.argv[1:])
    _hydra_main()


@hydra.main(config_path=CONF_DIR, config_name="prepare", version_base="1.3")
@exit_on_user_error("cadft-prepare")
def _hydra_main(cfg: DictConfig) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    validate(cfg)
    absolute_paths(cfg)
    prepared = prepare(cfg)
    print("\n".join(summary_lines(prepared)))


if __name__ == "__main__":
    main()
