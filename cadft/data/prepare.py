"""Prepare an extract: extract -> labels -> baseline features -> text -> split, as a table plus a data card, cached.

Participants in `data.withdrawals` (UK Biobank's file of withdrawn eids) and negative eids are dropped as the extract is
read, before anything else; the data card counts them (input.withdrawn, input.negative_eids). `text.history=on` adds the
medical history before baseline to each record (cadft.data.history) and a `history` column (the items written, for the
baselines' indicator columns). The numeric features' special answers stay as `<name>:special` columns (not features: the
baselines never see them), so a record can be written again in another feature order with exactly the same content
(cadft.data.text). The result is cached (cadft.data.cache) so a sweep prepares once. The table has `eid, label, split,
text`, for incident outcomes the follow-up (`followup_years`, `followup_status` and, with task.censoring=ipcw,
`ipcw_weight`: cadft.data.followup, cadft.data.ipcw), and one column per feature; the data card (cadft.data.card) has
counts, exclusions, cohort_steps, follow-up, prevalence per split, missingness and special answers per feature, parse
problems and token-length percentiles. Output is written to a staging folder and renamed, so a failure leaves nothing
half-written.
"""

from __future__ import annotations

import logging

import polars as pl

from cadft.config.schema import Config
from cadft.data import cache
from cadft.data.card import describe, followup_counts, special_answers
from cadft.data.features import (
    SPECIAL_SUFFIX,
    build_features,
    check_no_leakage,
    check_no_treatment_proxies,
    fallback_fields,
    parse_features,
    required_fields,
)
from cadft.data.followup import FOLLOWUP_COLUMNS, STATUS, TIME, cohort_steps
from cadft.data.history import HISTORY_COLUMN, build_history, history_fields
from cadft.data.ipcw import with_label_weights
from cadft.data.seed_json import read_seed_json
from cadft.data.split import place_of, split_cohort
from cadft.data.task import OPTIONAL_FIELDS, Definition, label
from cadft.data.text import render_texts
from cadft.data.ukb.centres import CENTRE_FIELD
from cadft.data.ukb.read import read_extract
from cadft.data.ukb.registry import load_registry
from cadft.data.ukb.withdrawals import check_someone_left, drop_withdrawn, kept, read_withdrawals
from cadft.errors import CadftError
from cadft.files import check_writable, publish_dir, staging_dir, writing
from cadft.progress import progress

log = logging.getLogger(__name__)
TABLE_COLUMNS = ("eid", "label", "split", "text")  # every prepared table's columns before the features


def feature_columns(table: pl.DataFrame) -> list[str]:
    """The feature columns of a prepared table (and `history` with text.history=on): what the baselines may use."""
    return [c for c in table.columns if c not in TABLE_COLUMNS + FOLLOWUP_COLUMNS and not c.endswith(SPECIAL_SUFFIX)]


def prepare(config: Config) -> cache.Prepared:
    """The prepared table for this config: from the cache, or built now."""
    read_withdrawals(config.data.withdrawals)  # a bad file is refused before the cache or the extract is looked at
    prepared = cache.entry(config)
    if prepared.directory.exists():
        problem = prepared.damage()
        if problem is None:
            log.info("prepared data from cache: %s", prepared.directory)
            return prepared
        log.warning("prepared data in %s is damaged (%s): building it again", prepared.directory, problem)
    root = prepared.directory.parent
    check_writable(root, "prepared data folder (paths.prepared_dir)", create=False)  # before the extract is read
    table, card = build(config)
    card["cache_key"] = prepared.key
    with writing(prepared.directory), staging_dir(root) as staging:  # a full disk: one line, no staging left
        cache.write_entry(staging, prepared.key, table, card)
        try:
            publish_dir(staging, prepared.directory)
        except OSError:  # another process (a sweep job, a rank) finished the same key first
            if prepared.damage() is not None:
                raise
    return prepared


def build(config: Config) -> tuple[pl.DataFrame, dict]:
    data = config.data
    steps = progress(total=5, desc="prepare", unit="step")
    withdrawn = read_withdrawals(data.withdrawals)
    if data.format == "seed_json":
        steps.set_postfix_str("reading seed JSON")
        table = read_seed_json(
            data.path, text_key=data.text_key, label_key=data.label_key, id_key=data.id_key, encoding=data.encoding
        )
        keep, removed = kept(table["eid"], withdrawn)
        check_someone_left(data.path, int(keep.sum()), removed)
        card = {"input": {"format": "seed_json", "rows": table.height, **removed}, "exclusions": {}, "features": []}
        table = table.filter(keep)
        features, places = [], None
        steps.update(3)
    else:
        definition = Definition.from_config(config.task)
        features = parse_features(data.features)
        reserved = sorted({f.name for f in features} & {*TABLE_COLUMNS, *FOLLOWUP_COLUMNS})
        if reserved:
            raise CadftError(
                f"data.features names {', '.join(reserved)}: the prepared table's own column(s); rename the feature"
            )
        check_no_leakage(features, definition)
        check_no_treatment_proxies(features, definition, data.allow_treatment_features)
        by_place = data.split.by != "eid"
        with_history = config.text.history == "on"
        steps.set_postfix_str("reading extract")
        extract = read_extract(
            data.path,
            definition.required_fields() + required_fields(features) + ([CENTRE_FIELD] if by_place else []),
            optional_ids=(*OPTIONAL_FIELDS, *fallback_fields(features), *(history_fields() if with_history else ())),
            fmt=data.format,
            max_bad_fraction=data.max_bad_fraction,
            encoding=data.encoding,
        )
        extract, removed = drop_withdrawn(extract, withdrawn)  # before anything else reads them
        places = place_of(extract.scalars, data.split.by) if by_place else None
        steps.update()
        steps.set_postfix_str("labelling")
        labels = label(extract, definition)
        steps.update()
        steps.set_postfix_str("features and text")
        followup = [TIME, STATUS] if definition.outcome == "incident" else []
        table = (
            labels.filter(pl.col("included"))
            .select("eid", "label", *followup)
            .join(build_features(extract, features), on="eid", how="left")
        )
        history_card = None
        if with_history:
            history, history_card = build_history(extract, definition, config.text.history_max_items)
            table = table.join(history, on="eid", how="left")
        table = table.with_columns(render_texts(table, features, config.text))
        steps.update()
        card = {
            "input": {
                "format": extract.naming,
                "rows": extract.n + sum(removed.values()),
                **removed,
                "absent_optional_fields": extract.absent_optional,
            },
            "exclusions": dict(
                labels.filter(~pl.col("included")).group_by("exclusion").len().sort("exclusion").iter_rows()
            ),
            "cohort_steps": cohort_steps(
                labels, definition.outcome, definition.policies(), load_registry()[190].labels
            ),
            "special_answers": special_answers(table, features),
            "parse_problems": {
                "bad_values_set_missing": extract.bad_values,
                "labels_outside_registry": extract.unmapped_labels,
            },
            "features": [f.name for f in features],
        }
        if followup:
            card["followup"] = followup_counts(table, definition.horizon_years)
        if history_card is not None:
            card["history"] = history_card
    if table.height == 0 or int(table["label"].sum()) == 0:
        raise CadftError(
            f"{data.path}: the cohort has {table.height} participants and no cases of task {config.task.name} after "
            f"exclusions {card['exclusions']}; check the extract's outcome fields and task.definition"
        )
    steps.set_postfix_str("splitting")
    splits, card["split"] = split_cohort(table, data.split, places)
    table = table.with_columns(splits)
    specials = [f.name + SPECIAL_SUFFIX for f in features if f.name + SPECIAL_SUFFIX in table.columns]
    if config.task.censoring == "ipcw":  # seed-JSON records, which have no follow-up, are refused with the config
        table = with_label_weights(table, config.task.horizon_years)
    table = table.select(
        *TABLE_COLUMNS,
        *[c for c in FOLLOWUP_COLUMNS if c in table.columns],
        *[f.name for f in features],
        *[HISTORY_COLUMN] * (HISTORY_COLUMN in table.columns),
        *specials,
    ).sort("eid")
    steps.update()
    steps.set_postfix_str("token lengths")
    card.update(describe(table, [f.name for f in features], config))
    steps.update()
    steps.close()
    return table, card
