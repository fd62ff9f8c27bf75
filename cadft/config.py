"""The config schema: one dataclass per config group (conf/<group>/), with the choices and ranges of every key, and
`validate`, the one check every entry point runs on its composed config before it reads or writes a file.

A mistake is a CadftError of one line naming the key, the value and what is allowed:

    eval.threshold=youdn: expected one of youden, max_f1, sensitivity, fixed (did you mean youden?)
    data.featurs: unknown key; did you mean data.features?

Keys are checked against the type hints below (`Annotated[int, Range(low=1)]`: an integer >= 1; `Literal[...]`: one of
the choices; a dataclass: a mapping with exactly its keys, those with a default may be absent). Groups whose options
differ in shape (backbone by source, zero by stage) pick their dataclass by that key (`Variants`). Rules between keys,
and the domain checks of the phenotype, feature, split and text specs (cadft.task, cadft.features, cadft.split,
cadft.text), run after the types are right.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from cadft.errors import CadftError
from cadft.schema import Describe, Range, Rule, Variants, check, describe, first_line, fits, hint_at, show, suggestion


# --- constraints ------------------------------------------------------------------------------------------------


def _increasing(values: list) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def _decision_curve(values: list) -> bool:
    return len(values) == 3 and 0 < values[0] < values[1] < 1 and values[2] > 0


def _iso_date(value: str) -> bool:
    try:
        dt.date.fromisoformat(str(value))
    except ValueError:
        return False
    return True


PositiveInt = Annotated[int, Range(low=1)]
CountInt = Annotated[int, Range(low=0)]
Positive = Annotated[float, Range(low=0, low_open=True)]
NonNegative = Annotated[float, Range(low=0)]
Fraction = Annotated[float, Range(0, 1)]
OpenFraction = Annotated[float, Range(0, 1, low_open=True, high_open=True)]
NonEmpty = Rule(bool, "not empty")
Increasing = Rule(_increasing, "strictly increasing")
Dtype = Literal["auto", "bf16", "fp16", "fp32"]
Offload = Literal["none", "cpu"]
BucketSize = Union[Literal["auto"], Annotated[float, Range(low=0, low_open=True)]]
Placement = Literal["drop", "state"]


# --- the groups -------------------------------------------------------------------------------------------------


@dataclass
class Paths:
    output_dir: str
    prepared_dir: str
    cache_dir: str


@dataclass
class Split:
    fractions: dict[str, float]  # train, validation, test: each > 0, summing to 1 (cadft.split)
    salt: str
    by: Literal["eid", "centre", "country"] = "eid"
    test_groups: Annotated[list[int | str], Describe("a list of centre codes (11003) or names (Cardiff), or of countries "
                                                     "(England, Scotland, Wales)")] | None = None  # checked by cadft.split


@dataclass
class Data:  # conf/data/{synthetic,ukb,seed_json}.yaml
    path: str
    format: Literal["auto", "showcase", "tab", "rap", "parquet", "seed_json"]
    encoding: Literal["utf8", "utf8-lossy"]
    oracle_path: str | None
    oracle_task: str | None
    split: Split
    features: dict[str, dict[str, Any]]  # the specs are checked by cadft.features
    withdrawals: str | None = None  # a file of withdrawn eids, one a line
    allow_treatment_features: bool = False  # treatment features (treatment: true) for a prevalent outcome
    max_bad_fraction: Fraction | None = None  # extracts
    text_key: str | None = None  # seed_json
    label_key: str | None = None
    id_key: str | None = None


@dataclass
class Codes:
    icd10: list[str]
    icd9: list[str]
    opcs4: list[str]
    self_report: dict[int, list[int]]


IsoDate = Annotated[str, Describe("an ISO date such as 2022-10-31"), Rule(_iso_date, "")]


@dataclass
class CensorDates:  # end of complete hospital data per country (cadft.followup)
    England: IsoDate
    Scotland: IsoDate
    Wales: IsoDate


@dataclass
class Task:  # conf/task/*.yaml
    name: str
    description: str
    outcome: Literal["incident", "prevalent"]
    horizon_years: Positive
    censor_dates: CensorDates
    censoring: Literal["exclude", "control"]
    competing_death: Literal["control", "exclude"]
    history_codes: list[str]
    history_policy: Literal["exclude", "prevalent", "event"]
    undated_events: Literal["exclude", "prevalent", "ignore"]
    deaths_count: bool
    definition: Codes  # the event
    exclude: Codes | None  # prior conditions (incident outcomes); null: the event codes


@dataclass
class Text:  # conf/text/*.yaml
    name: str
    item: str
    separator: str
    missing: Placement
    missing_text: str
    special: Placement
    prefix: str | None
    features: Annotated[list[str], NonEmpty] | None
    history: Literal["off", "on"]  # quoted in YAML, which reads a bare off/on as a boolean
    history_max_items: PositiveInt


@dataclass
class BackboneGguf:  # conf/backbone/smollm2_135m.yaml
    name: str
    source: Literal["gguf_package"]
    package: str
    pip_spec: str
    gguf_file: str
    trust_remote_code: bool


@dataclass
class BackboneTiny:  # conf/backbone/tiny.yaml
    name: str
    source: Literal["tiny"]
    hidden_size: PositiveInt
    intermediate_size: PositiveInt
    num_hidden_layers: PositiveInt
    num_attention_heads: PositiveInt
    num_key_value_heads: PositiveInt
    vocab_size: PositiveInt
    max_position_embeddings: PositiveInt
    seed: int
    trust_remote_code: bool
    architecture: Literal["llama", "mistral", "qwen2"] = "llama"


@dataclass
class StrategyDefaults:  # a preset's batching for one strategy (the train and model groups read it)
    batch_size: PositiveInt
    gradient_accumulation_steps: PositiveInt
    gradient_checkpointing: bool


@dataclass
class PerStrategy:
    lora: StrategyDefaults
    qlora: StrategyDefaults
    full: StrategyDefaults


@dataclass
class BackboneHf:  # conf/backbone/hf.yaml and the presets (llama3_8b, mistral_7b, qwen2_5_7b, qwen2_5_1_5b)
    name: str
    source: Literal["hf"]
    path: str
    trust_remote_code: bool
    lora_target_modules: Union[Literal["all-linear"], Annotated[list[str], NonEmpty]] = "all-linear"
    max_length: PositiveInt | None = None
    strategies: PerStrategy | None = None


@dataclass
class HeadClassifier:  # conf/head/classifier.yaml
    name: Literal["classifier"]


@dataclass
class HeadVerbalizer:  # conf/head/verbalizer.yaml
    name: Literal["verbalizer"]
    question: Annotated[str, NonEmpty]
    system: str | None
    answer_yes: Annotated[str, NonEmpty]
    answer_no: Annotated[str, NonEmpty]


@dataclass
class Quantization:
    quant_type: Literal["nf4", "fp4"]
    double_quant: bool
    compute_dtype: Dtype
    quant_storage: Dtype


@dataclass
class Lora:
    r: PositiveInt
    alpha: Positive
    dropout: Annotated[float, Range(0, 1, high_open=True)]
    target_modules: Union[Literal["all-linear"], Annotated[list[str], NonEmpty]]


@dataclass
class Model:  # conf/model/{lora,qlora,full}.yaml
    name: Literal["lora", "qlora", "full"]
    learning_rate: Positive
    weight_decay: NonNegative
    optim: str  # a transformers OptimizerNames value
    dtype: Dtype
    gradient_checkpointing: bool
    quantization: Quantization | None
    lora: Lora | None


@dataclass
class Imbalance:  # conf/imbalance/*.yaml
    method: Literal["weighted", "oversample", "none"]
    class_weights: Annotated[
        Union[Literal["inverse_frequency"], Annotated[list[Positive], Rule(lambda w: len(w) == 2, "two of them")], None],
        Describe("inverse_frequency, [w_control, w_case] (two numbers > 0) or null")]
    positive_fraction: OpenFraction | None


@dataclass
class ZeroNone:  # conf/zero/none.yaml
    stage: None


@dataclass
class Zero2:  # conf/zero/2.yaml
    stage: Literal[2]
    offload_optimizer: Offload
    overlap_comm: bool
    contiguous_gradients: bool
    reduce_bucket_size: BucketSize


@dataclass
class Zero3(Zero2):  # conf/zero/3.yaml
    stage: Literal[3]
    offload_param: Offload
    stage3_prefetch_bucket_size: BucketSize
    stage3_param_persistence_threshold: BucketSize
    stage3_gather_16bit_weights_on_model_save: Annotated[Literal[True], Describe("true (the saved model needs the whole weights)")]


@dataclass
class Train:  # conf/train/default.yaml
    batch_size: PositiveInt
    eval_batch_size: PositiveInt
    gradient_accumulation_steps: PositiveInt
    epochs: Positive
    max_steps: Annotated[int, Rule(lambda n: n == -1 or n >= 1, "-1 (train.epochs decides) or >= 1")]
    max_length: PositiveInt
    warmup_ratio: Annotated[float, Range(0, 1, high_open=True)]
    lr_scheduler: str  # a transformers SchedulerType value
    max_grad_norm: NonNegative
    group_by_length: bool
    logging_steps: PositiveInt
    eval_steps: PositiveInt
    save_steps: PositiveInt
    save_total_limit: PositiveInt | None
    resume: bool
    max_train_examples: PositiveInt | None
    subsample: Literal["stratified", "all_cases"]
    max_eval_examples: PositiveInt | None
    device: Literal["auto", "cpu", "cuda"]
    dataloader_workers: CountInt


@dataclass
class Eval:  # conf/eval/default.yaml
    batch_size: PositiveInt
    recalibration: Literal["platt", "isotonic", "prior_shift", "none"]
    threshold: Literal["youden", "max_f1", "sensitivity", "fixed"]
    target_sensitivity: Annotated[float, Range(0, 1, low_open=True)]
    fixed_threshold: Fraction
    on_no_validation_cases: Literal["error", "fixed"]
    risk_thresholds: Annotated[list[OpenFraction], Increasing]
    decision_curve: Annotated[list[float], Describe("[low, high, step] with 0 < low < high < 1 and step > 0"), Rule(_decision_curve, "")]
    bootstrap: CountInt
    ci_level: OpenFraction
    calibration_bins: Annotated[int, Range(low=2)]
    min_subgroup_cases: PositiveInt
    age_bands: Annotated[list[float], Increasing]
    plots: bool


@dataclass
class LightGbm:
    num_leaves: Annotated[list[Annotated[int, Range(low=2)]], NonEmpty]
    learning_rate: Annotated[list[Annotated[float, Range(0, 1, low_open=True)]], NonEmpty]
    max_trees: PositiveInt
    early_stopping_rounds: CountInt  # 0: no early stopping
    min_child_samples: PositiveInt


@dataclass
class Baselines:  # conf/baselines/default.yaml
    which: list[Literal["logistic", "lightgbm", "logistic_all", "lightgbm_all", "pce", "pce_recalibrated", "age", "zero_shot"]]
    logistic_c: Annotated[list[Positive], NonEmpty]
    lightgbm: LightGbm
    zero_shot_dtype: Dtype


@dataclass
class Tracking:  # conf/tracking/mlflow.yaml
    uri: str | None
    experiment: str
    artifact_location: str | None
    run_name: str | None
    log_model: Literal["pyfunc", "adapter", "none"]
    register_model: str | None
    log_eids: Union[Literal["auto"], bool]
    enabled: bool


@dataclass
class Config:  # conf/config.yaml
    seed: int
    paths: Paths
    data: Data
    task: Task
    text: Text
    backbone: Annotated[object, Variants("source", {"gguf_package": BackboneGguf, "tiny": BackboneTiny, "hf": BackboneHf})]
    head: Annotated[object, Variants("name", {"classifier": HeadClassifier, "verbalizer": HeadVerbalizer})]
    model: Model
    imbalance: Imbalance
    zero: Annotated[object, Variants("stage", {None: ZeroNone, 2: Zero2, 3: Zero3})]
    train: Train
    eval: Eval
    baselines: Baselines
    tracking: Tracking


# --- checking ---------------------------------------------------------------------------------------------------


def validate(cfg) -> None:
    """Raise a CadftError (one line) for the first thing wrong with a composed config (a DictConfig or a plain dict;
    a `hydra` node is ignored)."""
    values = _plain(cfg)
    check(values, Config, "")
    _check_rules(values)


def check_overrides(overrides: list[str]) -> None:
    """KEY=VALUE overrides of a saved run config (cadft-eval), checked on their own before any file is read: each key
    must exist and each value must fit it; the merged config is validated afterwards."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key:
            raise CadftError(f"{override}: overrides are KEY=VALUE, e.g. eval.threshold=max_f1")
        try:
            value = OmegaConf.to_container(OmegaConf.from_dotlist([override]), resolve=True)
        except OmegaConfBaseException as err:
            raise CadftError(f"{override}: cannot read the value ({first_line(err)})") from None
        for part in key.split("."):
            value = value[part]
        hint = hint_at(Config, key)
        if not isinstance(value, Mapping) and not fits(value, hint):
            raise CadftError(f"{key}={show(value)}: expected {describe(hint)}{suggestion(value, hint)}")


def unknown_key_message(key: str) -> str | None:
    """`data.featurs: unknown key; did you mean data.features?` when some part of the dotted key is not in the
    schema; None when the schema knows it."""
    try:
        hint_at(Config, key)
    except CadftError as err:
        return str(err)
    return None


def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg, DictConfig):
        return {k: v for k, v in cfg.items() if k != "hydra"}
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    try:
        return OmegaConf.to_container(job, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as err:
        raise CadftError(f"{getattr(err, 'full_key', '') or 'config'}: cannot resolve the value ({first_line(err)})") from None


# --- rules between keys -----------------------------------------------------------------------------------------

TINY_SIZE_MULTIPLE = 32  # bitsandbytes' CPU 4-bit kernel needs every Linear in/out size to be a multiple of it


def _check_rules(c: dict) -> None:
    model, imbalance, zero, train, backbone, data = (c[k] for k in ("model", "imbalance", "zero", "train", "backbone", "data"))
    quantized, adapters = model["name"] == "qlora", model["name"] != "full"
    if (model["quantization"] is not None) != quantized:
        raise CadftError(f"model.quantization must be {'set' if quantized else 'null'} for model.name={model['name']} "
                         f"(model={model['name']} sets it)")
    if (model["lora"] is not None) != adapters:
        raise CadftError(f"model.lora must be {'set' if adapters else 'null'} for model.name={model['name']} (model={model['name']} sets it)")
    if imbalance["method"] == "oversample" and imbalance["positive_fraction"] is None:
        raise CadftError("imbalance.positive_fraction=null: imbalance=oversample needs a number in (0, 1), e.g. 0.25")
    if imbalance["method"] == "weighted" and imbalance["class_weights"] is None:
        raise CadftError("imbalance.class_weights=null: imbalance=weighted needs inverse_frequency or [w_control, w_case]")
    if zero["stage"] is not None and zero["offload_optimizer"] == "cpu" and "adamw" not in model["optim"].lower():
        raise CadftError(f"zero.offload_optimizer=cpu runs DeepSpeed's CPU AdamW in place of model.optim={model['optim']}: "
                         "use an AdamW optimizer (adamw_torch) or zero.offload_optimizer=none")
    if train["save_steps"] % train["eval_steps"]:
        raise CadftError(f"train.save_steps={train['save_steps']} must be a multiple of train.eval_steps={train['eval_steps']} "
                         "(the best validation checkpoint is kept)")
    if backbone["source"] == "tiny":
        _check_tiny(backbone)
    if data["format"] == "seed_json" and not (data["text_key"] and data["label_key"]):
        raise CadftError("data.format=seed_json needs data.text_key and data.label_key (data=seed_json sets them)")
    if data["format"] == "seed_json" and c["text"]["history"] == "on":
        raise CadftError("text.history=on: seed-JSON records are text already, with no history fields to write; use text.history=off")
    if data["format"] == "seed_json" and data["split"].get("by", "eid") != "eid":
        raise CadftError(f"data.split.by={data['split']['by']}: seed-JSON records carry no assessment centre; use data.split.by=eid")
    _check_specs(c)


def _check_tiny(backbone: dict) -> None:
    hidden, heads = backbone["hidden_size"], backbone["num_attention_heads"]
    if hidden % heads:
        raise CadftError(f"backbone.hidden_size={hidden} is not divisible by backbone.num_attention_heads={heads}")
    sizes = {"hidden_size": hidden, "intermediate_size": backbone["intermediate_size"], "vocab_size": backbone["vocab_size"],
             "num_key_value_heads * head_dim": backbone["num_key_value_heads"] * (hidden // heads)}
    bad = {key: size for key, size in sizes.items() if size % TINY_SIZE_MULTIPLE}
    if bad:
        raise CadftError(f"backbone: tiny backbone sizes must be multiples of {TINY_SIZE_MULTIPLE} (bitsandbytes CPU 4-bit): {bad}")


def _check_specs(c: dict) -> None:
    """The phenotype, split, feature and text specs, checked by the modules that use them."""
    from omegaconf import OmegaConf

    from cadft.features import check_no_leakage, check_no_treatment_proxies, parse_features
    from cadft.history import check_no_treatment_history
    from cadft.task import Definition
    from cadft.split import check_fractions, held_out_groups
    from cadft.text import check_item, select_features

    definition = Definition.from_config(OmegaConf.create(c["task"]))
    check_fractions(c["data"]["split"]["fractions"])
    held_out_groups(c["data"]["split"])
    if c["data"]["format"] == "seed_json":
        return
    features = parse_features(c["data"]["features"])
    check_no_leakage(features, definition)
    check_no_treatment_proxies(features, definition, c["data"].get("allow_treatment_features", False))
    select_features(features, c["text"]["features"])
    check_item(c["text"]["item"])
    if c["text"]["history"] == "on":
        check_no_treatment_history(definition, c["data"].get("allow_treatment_features", False))
