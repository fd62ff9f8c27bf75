"""The config schema: one frozen dataclass per config group (conf/<group>/), with the choices and ranges of every key.

`cadft.config.validate` checks a composed config against these type hints (`Annotated[int, Range(low=1)]`: an integer
>= 1; `Literal[...]`: one of the choices; a dataclass: a mapping with exactly its keys, those with a default may be
absent) and returns it as a `Config`, which is what every stage receives. Groups whose options differ in shape
(backbone by source, head by name, zero by stage) pick their dataclass by that key (`Variants`).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from cadft.config.typecheck import Describe, Range, Rule, Variants

# --- constraints ------------------------------------------------------------------------------------------------


def _increasing(values: list) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


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
BucketSize = Literal["auto"] | Annotated[float, Range(low=0, low_open=True)]
Placement = Literal["drop", "state"]


# --- the groups -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paths:
    output_dir: str
    prepared_dir: str
    cache_dir: str


@dataclass(frozen=True)
class Split:
    fractions: dict[str, float]  # train, validation, test: each > 0, summing to 1 (cadft.data.split)
    salt: str
    by: Literal["eid", "centre", "country"] = "eid"
    test_groups: (
        Annotated[
            list[int | str],
            Describe("a list of centre codes (11003) or names (Cardiff), or of countries (England, Scotland, Wales)"),
        ]
        | None
    ) = None  # checked by cadft.data.split


@dataclass(frozen=True)
class Data:  # conf/data/{synthetic,ukb,seed_json}.yaml
    path: str
    format: Literal["auto", "showcase", "tab", "rap", "parquet", "seed_json"]
    encoding: Literal["utf8", "utf8-lossy"]
    oracle_path: str | None
    oracle_task: str | None
    split: Split
    features: dict[str, dict[str, Any]]  # the specs are checked by cadft.data.features
    withdrawals: str | None = None  # a file of withdrawn eids, one a line
    allow_treatment_features: bool = False  # treatment features (treatment: true) for a prevalent outcome
    max_bad_fraction: Fraction | None = None  # extracts
    text_key: str | None = None  # seed_json
    label_key: str | None = None
    id_key: str | None = None


@dataclass(frozen=True)
class Codes:
    icd10: list[str]
    icd9: list[str]
    opcs4: list[str]
    self_report: dict[int, list[int]]


IsoDate = Annotated[str, Describe("an ISO date such as 2022-10-31"), Rule(_iso_date, "")]


@dataclass(frozen=True)
class CensorDates:  # end of complete hospital data per country (cadft.data.followup)
    England: IsoDate
    Scotland: IsoDate
    Wales: IsoDate


@dataclass(frozen=True)
class Task:  # conf/task/*.yaml
    name: str
    description: str
    outcome: Literal["incident", "prevalent"]
    horizon_years: Positive
    censor_dates: CensorDates
    censoring: Literal["exclude", "control", "ipcw"]
    competing_death: Literal["control", "exclude"]
    history_codes: list[str]
    history_policy: Literal["exclude", "prevalent", "event"]
    undated_events: Literal["exclude", "prevalent", "ignore"]
    deaths_count: bool
    definition: Codes  # the event
    exclude: Codes | None  # prior conditions (incident outcomes); null: the event codes


@dataclass(frozen=True)
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
    titles: dict[str, str] | None = None  # feature -> the title written for it ({title}/{Title}; text=compact)
    categories: dict[str, str] | None = None  # feature -> cut-point scheme (cadft/data/cut_points.yaml)


@dataclass(frozen=True)
class BackboneGguf:  # conf/backbone/smollm2_135m.yaml
    name: str
    source: Literal["gguf_package"]
    package: str
    pip_spec: str
    gguf_file: str
    trust_remote_code: bool


Sha256 = Annotated[
    str, Describe("64 hexadecimal digits"), Rule(lambda s: len(s) == 64 and set(s) <= set("0123456789abcdef"), "")
]


@dataclass(frozen=True)
class BackboneGgufParts:  # conf/backbone/gemma3_270m.yaml
    name: str
    source: Literal["gguf_parts"]
    packages: Annotated[list[str], NonEmpty]  # the packages holding the GGUF file's parts, in order (never imported)
    pip_spec: str
    gguf_file: str  # part i is <gguf_file>.part<ii> inside the i-th package
    sha256: Sha256  # of the joined file, checked before it is converted
    trust_remote_code: bool


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class StrategyDefaults:  # a preset's batching for one strategy (the train and model groups read it)
    batch_size: PositiveInt
    gradient_accumulation_steps: PositiveInt
    gradient_checkpointing: bool


@dataclass(frozen=True)
class PerStrategy:
    lora: StrategyDefaults
    qlora: StrategyDefaults
    full: StrategyDefaults


@dataclass(frozen=True)
class BackboneHf:  # conf/backbone/hf.yaml and the presets (llama3_8b, mistral_7b, qwen2_5_7b, qwen2_5_1_5b)
    name: str
    source: Literal["hf"]
    path: str
    trust_remote_code: bool
    lora_target_modules: Literal["all-linear"] | Annotated[list[str], NonEmpty] = "all-linear"
    max_length: PositiveInt | None = None
    strategies: PerStrategy | None = None


@dataclass(frozen=True)
class HeadClassifier:  # conf/head/classifier.yaml
    name: Literal["classifier"]


@dataclass(frozen=True)
class HeadVerbalizer:  # conf/head/verbalizer.yaml
    name: Literal["verbalizer"]
    question: Annotated[str, NonEmpty]
    system: str | None
    answer_yes: Annotated[str, NonEmpty]
    answer_no: Annotated[str, NonEmpty]
    question_first: bool = False  # the question before the record: the prompt prefix every record shares grows


@dataclass(frozen=True)
class Quantization:
    quant_type: Literal["nf4", "fp4"]
    double_quant: bool
    compute_dtype: Dtype
    quant_storage: Dtype


@dataclass(frozen=True)
class Lora:
    r: PositiveInt
    alpha: Positive
    dropout: Annotated[float, Range(0, 1, high_open=True)]
    target_modules: Literal["all-linear"] | Annotated[list[str], NonEmpty]


@dataclass(frozen=True)
class Model:  # conf/model/{lora,qlora,full}.yaml
    name: Literal["lora", "qlora", "full"]
    learning_rate: Positive
    weight_decay: NonNegative
    optim: str  # a transformers OptimizerNames value
    dtype: Dtype
    gradient_checkpointing: bool
    quantization: Quantization | None
    lora: Lora | None


@dataclass(frozen=True)
class Imbalance:  # conf/imbalance/*.yaml
    method: Literal["weighted", "oversample", "none"]
    class_weights: Annotated[
        Literal["inverse_frequency"] | Annotated[list[Positive], Rule(lambda w: len(w) == 2, "two of them")] | None,
        Describe("inverse_frequency, [w_control, w_case] (two numbers > 0) or null"),
    ]
    positive_fraction: OpenFraction | None


@dataclass(frozen=True)
class ZeroNone:  # conf/zero/none.yaml
    stage: None


@dataclass(frozen=True)
class Zero2:  # conf/zero/2.yaml
    stage: Literal[2]
    offload_optimizer: Offload
    overlap_comm: bool
    contiguous_gradients: bool
    reduce_bucket_size: BucketSize


@dataclass(frozen=True)
class Zero3(Zero2):  # conf/zero/3.yaml
    stage: Literal[3]
    offload_param: Offload
    stage3_prefetch_bucket_size: BucketSize
    stage3_param_persistence_threshold: BucketSize
    stage3_gather_16bit_weights_on_model_save: Annotated[
        Literal[True], Describe("true (the saved model needs the whole weights)")
    ]


@dataclass(frozen=True)
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
    subsample: Literal["stratified", "all_cases", "none"]  # none: the whole training split
    max_eval_examples: PositiveInt | None
    device: Literal["auto", "cpu", "cuda"]
    dataloader_workers: CountInt
    eval_every: Literal["steps", "epoch"] = "steps"  # score validation every train.eval_steps, or after each epoch
    early_stopping_patience: PositiveInt | None = None  # evaluations without a better validation AUROC before stopping
    shuffle_feature_order: bool = False  # each training record's features in an order of its own (augmentation)


@dataclass(frozen=True)
class Eval:  # conf/eval/default.yaml
    batch_size: PositiveInt
    recalibration: Literal["platt", "isotonic", "prior_shift", "none"]
    threshold: Literal["youden", "max_f1", "sensitivity", "fixed"]
    target_sensitivity: Annotated[float, Range(0, 1, low_open=True)]
    fixed_threshold: Fraction
    on_no_validation_cases: Literal["error", "fixed"]
    risk_thresholds: Annotated[list[OpenFraction], Increasing]
    decision_curve: Annotated[
        list[float], Describe("[low, high, step] with 0 < low < high < 1 and step > 0"), Rule(_decision_curve, "")
    ]
    bootstrap: CountInt
    ci_level: OpenFraction
    calibration_bins: Annotated[int, Range(low=2)]
    min_subgroup_cases: PositiveInt
    age_bands: Annotated[list[float], Increasing]
    plots: bool
    test_time_orders: PositiveInt = 1  # score each record with its features in K orders, average the probabilities
    prefix_reuse: bool = True  # compute the prompt prefix every record shares once per batch (same scores, faster)
    explain: bool = False  # explain each risk of explain.n participants after evaluating (cadft/explain/)


@dataclass(frozen=True)
class LightGbm:
    num_leaves: Annotated[list[Annotated[int, Range(low=2)]], NonEmpty]
    learning_rate: Annotated[list[Annotated[float, Range(0, 1, low_open=True)]], NonEmpty]
    max_trees: PositiveInt
    early_stopping_rounds: CountInt  # 0: no early stopping
    min_child_samples: PositiveInt


@dataclass(frozen=True)
class Baselines:  # conf/baselines/default.yaml
    which: list[
        Literal[
            "logistic",
            "lightgbm",
            "logistic_all",
            "lightgbm_all",
            "pce",
            "pce_recalibrated",
            "age",
            "zero_shot",
            "cox",
            "cox_all",
            "logistic+llm",
            "pce+llm",
        ]
    ]
    logistic_c: Annotated[list[Positive], NonEmpty]
    lightgbm: LightGbm
    zero_shot_dtype: Dtype
    # Absent from configs saved before the Cox baseline existed: those runs get this grid.
    cox_penalizer: Annotated[list[Positive], NonEmpty] = (0.001, 0.01, 0.1)


def _explain_variants(values: list) -> bool:
    return "remove" in values and len(set(values)) == len(values)


def _distinct(values: list) -> bool:
    return len(set(values)) == len(values)


@dataclass(frozen=True)
class Explain:  # conf/explain/default.yaml
    n: PositiveInt
    seed: int
    split: Literal["validation", "test"]
    variants: Annotated[list[Literal["remove", "median"]], Rule(_explain_variants, "containing remove, each once")]
    features: Annotated[list[str], NonEmpty] | None  # checked against the run's record (cadft.explain.occlusion)
    baselines: Annotated[list[Literal["logistic", "lightgbm"]], Rule(_distinct, "each once")]
    batch_size: PositiveInt
    bootstrap: CountInt
    reasons: PositiveInt


@dataclass(frozen=True)
class Tracking:  # conf/tracking/mlflow.yaml
    uri: str | None
    experiment: str
    artifact_location: str | None
    run_name: str | None
    log_model: Literal["pyfunc", "adapter", "none"]
    register_model: str | None
    log_eids: Literal["auto"] | bool
    enabled: bool


Backbone = Annotated[
    BackboneGguf | BackboneGgufParts | BackboneTiny | BackboneHf,
    Variants(
        "source",
        {"gguf_package": BackboneGguf, "gguf_parts": BackboneGgufParts, "tiny": BackboneTiny, "hf": BackboneHf},
    ),
]
Head = Annotated[
    HeadClassifier | HeadVerbalizer,
    Variants("name", {"classifier": HeadClassifier, "verbalizer": HeadVerbalizer}),
]
Zero = Annotated[ZeroNone | Zero2 | Zero3, Variants("stage", {None: ZeroNone, 2: Zero2, 3: Zero3})]
CLASSIFIER = HeadClassifier("classifier")  # the head of runs saved before the head group existed


@dataclass(frozen=True)
class Config:  # conf/config.yaml
    seed: int
    paths: Paths
    data: Data
    task: Task
    text: Text
    backbone: Backbone
    head: Head
    model: Model
    imbalance: Imbalance
    zero: Zero
    train: Train
    eval: Eval
    baselines: Baselines
    tracking: Tracking
    explain: Explain
