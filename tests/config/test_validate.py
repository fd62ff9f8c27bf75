"""The config check (cadft.config.validate, cadft.config.compose): every shipped config passes it (every option of
every group in every app's config, every experiment, every multirun template with each of its swept values, the SLURM
launcher) and comes back as the typed Config (cadft.config.schema), and each kind of mistake is one line naming the
key, the value and what is allowed."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from cadft.config import CONF_DIR, schema
from cadft.config.compose import check_command_line
from cadft.config.schema import Config
from cadft.config.typecheck import plain
from cadft.config.validate import (
    check_overrides,
    load,
    to_yaml,
    validate,
    validate_group,
    with_absolute_paths,
)
from cadft.errors import CadftError
from tests.conftest import TEMPLATES_DIR

APPS = (
    "config",
    "prepare",
    "baselines_cli",
)  # the configs of cadft train (and cadft eval's runs), cadft prepare, cadft baselines
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("hydra", "experiment"))
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]
EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
TEMPLATES = sorted(path.stem for path in TEMPLATES_DIR.glob("*.yaml"))
# Options that leave a value to the command line (`???`).
REQUIRED = {
    ("data", "ukb"): ["data.path=/data/ukb.csv"],
    ("data", "seed_json"): ["data.path=/data/records.jsonl"],
    ("backbone", "hf"): ["backbone.path=HuggingFaceTB/SmolLM2-360M"],
    # a prevalent outcome refuses treatment features (proxies of the label): the shipped feature set has two
    ("task", "hard_cad_prevalent"): ["~data.features.cholesterol_medication", "~data.features.bp_medication"],
}
# The typed group each option gives (groups whose options differ in shape pick their dataclass by a key).
GROUP_TYPES = {
    "data": schema.Data,
    "task": schema.Task,
    "text": schema.Text,
    "model": schema.Model,
    "imbalance": schema.Imbalance,
    "train": schema.Train,
    "eval": schema.Eval,
    "baselines": schema.Baselines,
    "tracking": schema.Tracking,
    "explain": schema.Explain,
}
VARIANT_TYPES = {
    ("backbone", "tiny"): schema.BackboneTiny,
    ("backbone", "smollm2_135m"): schema.BackboneGguf,  # every other backbone option is a Hugging Face model
    ("backbone", "gemma3_270m"): schema.BackboneGgufParts,
    ("head", "classifier"): schema.HeadClassifier,
    ("head", "verbalizer"): schema.HeadVerbalizer,
    ("zero", "none"): schema.ZeroNone,
    ("zero", "2"): schema.Zero2,
    ("zero", "3"): schema.Zero3,
}


def _typed_group(group: str, option: str) -> type:
    if group == "backbone":
        return VARIANT_TYPES.get((group, option), schema.BackboneHf)
    return VARIANT_TYPES.get((group, option)) or GROUP_TYPES[group]


def _compose(*overrides: str, config_name: str = "config"):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=True)


def _compose_template(template: str, overrides: list[str]):
    # As `--config-dir multirun_templates --config-name TEMPLATE`: conf/ is on the search path.
    with initialize_config_dir(config_dir=str(TEMPLATES_DIR), version_base="1.3"):
        return compose(
            template, overrides=[f"hydra.searchpath=[file://{CONF_DIR}]", *overrides], return_hydra_config=True
        )


def _jobs(cfg) -> list[list[str]]:
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]


def test_the_groups_are_all_covered():
    assert set(GROUPS) == {
        "data",
        "task",
        "text",
        "backbone",
        "head",
        "model",
        "imbalance",
        "zero",
        "train",
        "eval",
        "baselines",
        "tracking",
        "explain",
    }
    assert len(OPTIONS) >= 33 and EXPERIMENTS == ["demo"] and len(TEMPLATES) == 8


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_option_of_every_group_passes(group, option):
    # zero=2: as cadft.config.compose.quote_stage_choices writes it
    choice = f"'{option}'" if option.isdigit() else option
    cfg = _compose(f"{group}={choice}", *REQUIRED.get((group, option), []))
    assert cfg.hydra.runtime.choices[group] == option
    config = validate(cfg)
    assert isinstance(config, Config)
    assert type(getattr(config, group)) is _typed_group(group, option)  # exactly: Zero3 is a Zero2 too
    assert validate_group(cfg, group) == getattr(config, group)  # the group on its own types the same


@pytest.mark.parametrize("app", APPS)
@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_every_app_and_experiment_passes(app, experiment):
    config = validate(_compose(*([f"+experiment={experiment}"] if experiment else []), config_name=app))
    assert isinstance(config, Config) and isinstance(config.data, schema.Data)


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_and_each_of_its_jobs_passes(template):
    jobs = _jobs(_compose_template(template, []))
    assert len(jobs) > 1
    for job in jobs:
        assert isinstance(validate(_compose_template(template, job)), Config)
    # The command-line check composes each job too, also with the SLURM launcher.
    check_command_line(
        "cadft train",
        "config",
        ["-m", "--config-dir", str(TEMPLATES_DIR), "--config-name", template, "hydra/launcher=slurm"],
    )


def test_validate_gives_the_typed_frozen_config_and_plain_gives_its_values_back():
    cfg = _compose("backbone=tiny", "head=verbalizer", "zero='3'", "model=qlora", "data.split.by=country",
                   "data.split.test_groups=[Wales]")  # fmt: skip
    config = validate(cfg)
    assert isinstance(config, Config)
    assert type(config.backbone) is schema.BackboneTiny and type(config.head) is schema.HeadVerbalizer
    assert type(config.zero) is schema.Zero3 and isinstance(config.model, schema.Model)
    assert isinstance(config.model.quantization, schema.Quantization) and isinstance(config.model.lora, schema.Lora)
    assert isinstance(config.data.split, schema.Split) and isinstance(config.task.censor_dates, schema.CensorDates)
    assert config.backbone.hidden_size == cfg.backbone.hidden_size and config.head.question == cfg.head.question
    assert config.data.split.test_groups == ["Wales"] and config.eval.threshold == cfg.eval.threshold
    with pytest.raises(FrozenInstanceError):
        config.eval.bootstrap = 5  # a change is a new config: dataclasses.replace
    assert replace(config, eval=replace(config.eval, bootstrap=5)).eval.bootstrap == 5 and config.eval.bootstrap != 5
    assert validate(plain(config)) == config  # the plain values (as YAML holds them) type back to the same config


def test_with_absolute_paths_resolves_the_file_paths_against_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = Path.cwd().resolve()
    config = validate(
        _compose(
            "paths.output_dir=out",
            "paths.prepared_dir=out/prepared",
            "paths.cache_dir='~/cadft-cache'",
            "data.path=extract.csv",
            "data.oracle_path=null",
            "+data.withdrawals=../w.csv",
        )
    )
    absolute = with_absolute_paths(config)
    assert absolute.paths == schema.Paths(
        output_dir=str(here / "out"),
        prepared_dir=str(here / "out" / "prepared"),
        cache_dir=str((Path.home() / "cadft-cache").resolve()),
    )
    assert (absolute.data.path, absolute.data.oracle_path, absolute.data.withdrawals) == (
        str(here / "extract.csv"),
        None,
        str(here.parent / "w.csv"),
    )
    assert replace(absolute, paths=config.paths, data=config.data) == config  # nothing else changes
    assert with_absolute_paths(absolute) == absolute  # absolute paths stay as they are


def test_a_saved_config_loads_back_the_same(tmp_path):
    config = validate(_compose("head=verbalizer", "model=qlora"))
    saved = tmp_path / "config.yaml"
    saved.write_text(to_yaml(config))
    assert load(saved) == config
    assert load(saved, ["eval.threshold=max_f1"]) == replace(config, eval=replace(config.eval, threshold="max_f1"))
    with pytest.raises(CadftError, match=r"eval.threshold=youdn: expected one of youden"):
        load(saved, ["eval.threshold=youdn"])
    # saved before the head group existed: those runs used the classifier
    old = tmp_path / "old.yaml"
    old.write_text(to_yaml(validate(_compose())).replace("head:\n  name: classifier\n", ""))
    assert "\nhead:" not in old.read_text() and load(old).head == schema.CLASSIFIER
    # saved before the explain group existed: the shipped explain settings, eval.explain off
    older = tmp_path / "older.yaml"
    text = to_yaml(config)
    older.write_text(text[: text.index("explain:\n")].replace("  explain: false\n", ""))
    assert load(older) == config and not load(older).eval.explain


def test_the_slurm_launcher_passes():
    cfg = _compose("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    assert cfg.hydra.launcher.partition == "gpu"
    validate(cfg)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["eval.threshold=youdn"],
            "eval.threshold=youdn: expected one of youden, max_f1, sensitivity, fixed (did you mean youden?)",
        ),
        (["model.lora.r=-4"], "model.lora.r=-4: expected an integer >= 1"),
        (["+data.featurs=1"], "data.featurs: unknown key; did you mean data.features?"),
        (["train.batch_size=0"], "train.batch_size=0: expected an integer >= 1"),
        (
            ["imbalance=oversample", "imbalance.positive_fraction=2"],
            "imbalance.positive_fraction=2: expected a number in (0, 1) or null",
        ),
        (["data=ukb"], "data.path=???: a value is required (text); give data.path=..."),
        (["backbone=hf"], "backbone.path=???: a value is required (text); give backbone.path=..."),
        (
            ["+eval.temperature_scaling=true"],
            "eval.temperature_scaling: unknown key; eval has: batch_size, recalibration, threshold, "
            "target_sensitivity, fixed_threshold, on_no_validation_cases, risk_thresholds, decision_curve, bootstrap, "
            "ci_level, calibration_bins, min_subgroup_cases, age_bands, plots, test_time_orders, prefix_reuse, explain",
        ),
        (["+tracking.urii=x"], "tracking.urii: unknown key; did you mean tracking.uri?"),
        (["~eval.plots"], "eval.plots: missing; expected true or false"),
        (["seed=abc"], "seed=abc: expected an integer"),
        # imbalance
        (
            ["imbalance=oversample", "imbalance.positive_fraction=null"],
            "imbalance.positive_fraction=null: imbalance=oversample needs a number in (0, 1), e.g. 0.25",
        ),
        (
            ["imbalance.class_weights=null"],
            "imbalance.class_weights=null: imbalance=weighted needs inverse_frequency or [w_control, w_case]",
        ),
        (
            ["imbalance.class_weights=[1.0]"],
            "imbalance.class_weights=[1.0]: expected inverse_frequency, [w_control, w_case] (two numbers > 0) or null",
        ),
        (["imbalance.method=smote"], "imbalance.method=smote: expected one of weighted, oversample, none"),
        # model
        (
            ["model=qlora", "model.name=lora"],
            "model.quantization must be null for model.name=lora (model=lora sets it)",
        ),
        (["model=full", "model.name=lora"], "model.lora must be set for model.name=lora (model=lora sets it)"),
        (["model.name=adapter"], "model.name=adapter: expected one of lora, qlora, full"),
        (["model.dtype=fp8"], "model.dtype=fp8: expected one of auto, bf16, fp16, fp32"),
        (
            ["model=qlora", "model.quantization.quant_type=int3"],
            "model.quantization.quant_type=int3: expected one of nf4, fp4",
        ),
        (
            ["model.lora.target_modules=[]"],
            "model.lora.target_modules=[]: expected all-linear or a list of texts, not empty",
        ),
        (["model.lora.dropout=1"], "model.lora.dropout=1: expected a number in [0, 1)"),
        # zero
        (["zero='2'", "+zero.offload_param=cpu"], "zero.offload_param: only for zero.stage=3, not zero.stage=2"),
        (["zero='2'", "zero.offload_optimizer=nvme"], "zero.offload_optimizer=nvme: expected one of none, cpu"),
        (
            ["zero='3'", "zero.stage3_gather_16bit_weights_on_model_save=false"],
            "zero.stage3_gather_16bit_weights_on_model_save=false: expected true (the saved model needs the whole "
            "weights)",
        ),
        (
            ["zero='2'", "zero.offload_optimizer=cpu", "model.optim=sgd"],
            "zero.offload_optimizer=cpu runs DeepSpeed's CPU AdamW in place of "
            "model.optim=sgd: use an AdamW optimizer (adamw_torch) or zero.offload_optimizer=none",
        ),
        (["zero.stage=1"], "zero.stage=1: expected one of null, 2, 3"),
        # train
        (
            ["train.save_steps=150"],
            "train.save_steps=150 must be a multiple of train.eval_steps=100 (the best validation checkpoint is kept)",
        ),
        (["train.warmup_ratio=1"], "train.warmup_ratio=1: expected a number in [0, 1)"),
        (["train.subsample=random"], "train.subsample=random: expected one of stratified, all_cases, none"),
        (["train.max_train_examples=0"], "train.max_train_examples=0: expected an integer >= 1 or null"),
        (["train.max_steps=0"], "train.max_steps=0: expected an integer, -1 (train.epochs decides) or >= 1"),
        (["train.device=tpu"], "train.device=tpu: expected one of auto, cpu, cuda (did you mean cpu?)"),
        # task, text, data
        (["task.outcome=lifetime"], "task.outcome=lifetime: expected one of incident, prevalent"),
        (["task.undated_events=drop"], "task.undated_events=drop: expected one of exclude, prevalent, ignore"),
        (["task.censor_dates.Wales=soon"], "task.censor_dates.Wales=soon: expected an ISO date such as 2022-10-31"),
        (
            ["~task.censor_dates.Scotland"],
            "task.censor_dates.Scotland: missing; expected an ISO date such as 2022-10-31",
        ),
        (
            ["+task.censor_dates.Ireland=2022-01-31"],
            "task.censor_dates.Ireland: unknown key; task.censor_dates has: England, Scotland, Wales",
        ),
        (
            ["task.censor_dates=2022-10-31"],
            "task.censor_dates=2022-10-31: expected a mapping of England, Scotland, Wales",
        ),
        (["task.censoring=drop"], "task.censoring=drop: expected one of exclude, control, ipcw"),
        (
            ["task=hard_cad_prevalent", "task.censoring=ipcw"],
            "task hard_cad_prevalent: task.censoring=ipcw weights follow-up, which only incident outcomes have; use "
            "task.censoring=exclude for task.outcome=prevalent",
        ),
        (
            ["data=seed_json", "data.path=/x.jsonl", "task.censoring=ipcw"],
            "task.censoring=ipcw: seed-JSON records carry no follow-up to weight; use task.censoring=exclude",
        ),
        (["baselines.cox_penalizer=[]"], "baselines.cox_penalizer=[]: expected a list of numbers > 0, not empty"),
        (["task.competing_death=censor"], "task.competing_death=censor: expected one of control, exclude"),
        (["task.history_policy=ignore"], "task.history_policy=ignore: expected one of exclude, prevalent, event"),
        (["task.history_codes=I252"], "task.history_codes=I252: expected a list of texts"),
        (
            ["task=hard_cad_no_prior_cvd", "~task.exclude.opcs4"],
            "task.exclude.opcs4: missing; expected a list of texts",
        ),
        (
            ["task=hard_cad_no_prior_cvd", "task.outcome=prevalent"],
            (
                "task hard_cad_no_prior_cvd_incident10: task.exclude applies to incident "
                "outcomes only; set task.exclude=null for task.outcome=prevalent (task.definition is the prevalent "
                "condition)"
            ),
        ),
        (
            ["task.exclude={icd10: [], icd9: [], opcs4: [], self_report: {}}"],
            ("task hard_cad_incident10: task.exclude lists no codes; give icd10, icd9, opcs4 or self_report codes"),
        ),
        (["task.horizon_years=0"], "task.horizon_years=0: expected a number > 0"),
        (["text.missing=hide"], "text.missing=hide: expected one of drop, state"),
        (["text.item=nothing"], "text.item='nothing' must contain {value} once"),
        (
            ["text=categories", "text.categories.hdl=bmi_who"],
            "text.categories.hdl=bmi_who: the scheme's cut points are in kg/m2, the feature is in mmol/L",
        ),
        (
            ["text=categories", "text.features=[age,hdl]"],
            "text.categories.hdl=hdl_nice_esc depends on sex, which text.features does not write: the category would "
            "carry sex into the text; add sex or choose another scheme",
        ),
        (["+text.categories.sex=bmi_who"], "text.categories.sex: categories need a numeric feature of data.features"),
        (
            ["+text.categories.bmi=who"],
            "text.categories.bmi=who: no such scheme in cut_points.yaml (known: sbp_acc_aha_2017, sbp_nice_ng136, "
            "dbp_acc_aha_2017, bmi_who, hba1c_who_nice, total_cholesterol_atp3, ldl_atp3, hdl_nice_esc, "
            "triglycerides_atp3, pack_years_20)",
        ),
        (
            ["text=compact", "+text.titles.bmii=BMI"],
            "text.titles names ['bmii'], which are not in data.features (age, sex, ethnicity, townsend, bmi, waist, "
            "systolic_bp, diastolic_bp, smoking, pack_years, alcohol, activity, cholesterol, hdl, ldl, triglycerides, "
            "hba1c, glucose, crp, lipoprotein_a, cystatin_c, diabetes, cholesterol_medication, bp_medication, "
            "insulin, stroke_diagnosed, high_bp_diagnosed, family_heart_disease, family_stroke, "
            "self_reported_high_cholesterol)",
        ),
        (["eval.test_time_orders=0"], "eval.test_time_orders=0: expected an integer >= 1"),
        (["train.early_stopping_patience=0"], "train.early_stopping_patience=0: expected an integer >= 1 or null"),
        (["train.eval_every=step"], "train.eval_every=step: expected one of steps, epoch (did you mean steps?)"),
        (
            ["data=seed_json", "data.path=x.json", "eval.test_time_orders=2"],
            "train.shuffle_feature_order / eval.test_time_orders: seed-JSON records are text already, with no "
            "features to write in another order; use false / 1",
        ),
        (["data.format=csv"], "data.format=csv: expected one of auto, showcase, tab, rap, parquet, seed_json"),
        (["data.max_bad_fraction=2"], "data.max_bad_fraction=2: expected a number in [0, 1] or null"),
        (
            ["data.split.fractions.train=0.9"],
            "data.split.fractions={'train': 0.9, 'validation': 0.15, 'test': 0.15}: each must be > 0 and they must sum "
            "to 1",
        ),
        (["+data.features.age.kind=average"], "data.features.age.kind='average'; allowed: field, mean, flag"),
        (["+data.features.age.treatment=yes"], "data.features.age.treatment='yes'; allowed: true, false"),
        (
            ["task=hard_cad_prevalent"],
            "data.features cholesterol_medication, bp_medication are treatments (treatment: true), proxies of "
            "the prevalent outcome of task hard_cad_prevalent (people with the disease are treated for it): remove "
            "them (~data.features.cholesterol_medication ~data.features.bp_medication) or set "
            "data.allow_treatment_features=true",
        ),
        (["data.allow_treatment_features=maybe"], "data.allow_treatment_features=maybe: expected true or false"),
        (["data.split.by=region"], "data.split.by=region: expected one of eid, centre, country"),
        (
            ["data.split.by=country"],
            "data.split.by=country needs data.split.test_groups: the country group(s) that form the test split, "
            "e.g. [Wales]",
        ),
        (
            ["data.split.by=country", "data.split.test_groups=[Wales,Ireland]"],
            "data.split.test_groups: ['Ireland'] are not countries; allowed: England, Scotland, Wales",
        ),
        (
            ["data.split.test_groups=[11003]"],
            "data.split.test_groups=[11003] needs data.split.by=centre or country (data.split.by=eid splits by hash)",
        ),
        (
            ["data.split.test_groups=Wales"],
            "data.split.test_groups=Wales: expected a list of centre codes (11003) or names (Cardiff), or "
            "of countries (England, Scotland, Wales) or null",
        ),
        (
            ["data=seed_json", "data.path=/x.jsonl", "data.split.by=centre", "data.split.test_groups=[11003]"],
            "data.split.by=centre: seed-JSON records carry no assessment centre; use data.split.by=eid",
        ),
        (
            ["data=seed_json", "data.path=/x.jsonl", "data.text_key=null"],
            "data.format=seed_json needs data.text_key and data.label_key (data=seed_json sets them)",
        ),
        # backbone
        (["backbone.source=gguf"], "backbone.source=gguf: expected one of gguf_package, gguf_parts, tiny, hf"),
        (
            ["backbone=tiny", "backbone.num_attention_heads=3"],
            "backbone.hidden_size=64 is not divisible by backbone.num_attention_heads=3",
        ),
        (
            ["backbone=tiny", "backbone.hidden_size=48", "backbone.num_attention_heads=3"],
            "backbone: tiny backbone sizes must be multiples of 32 (bitsandbytes CPU 4-bit): {'hidden_size': 48}",
        ),
        # eval, baselines, tracking
        (
            ["eval.decision_curve=[0.3,0.1,0.01]"],
            "eval.decision_curve=[0.3, 0.1, 0.01]: expected [low, high, step] with 0 < low < high < 1 and step > 0",
        ),
        (
            ["eval.risk_thresholds=[0.2,0.1]"],
            "eval.risk_thresholds=[0.2, 0.1]: expected a list of numbers in (0, 1), strictly increasing",
        ),
        (
            ["eval.risk_thresholds=[0.1,1.5]"],
            "eval.risk_thresholds=[0.1, 1.5]: expected a list of numbers in (0, 1), strictly increasing",
        ),
        (["eval.age_bands=[50,40]"], "eval.age_bands=[50, 40]: expected a list of numbers, strictly increasing"),
        (["eval.ci_level=1"], "eval.ci_level=1: expected a number in (0, 1)"),
        (["eval.bootstrap=-1"], "eval.bootstrap=-1: expected an integer >= 0"),
        (["eval.calibration_bins=1"], "eval.calibration_bins=1: expected an integer >= 2"),
        (["eval.min_subgroup_cases=0"], "eval.min_subgroup_cases=0: expected an integer >= 1"),
        (
            ["eval.recalibration=temperature"],
            "eval.recalibration=temperature: expected one of platt, isotonic, prior_shift, none",
        ),
        (["eval.target_sensitivity=0"], "eval.target_sensitivity=0: expected a number in (0, 1]"),
        (["eval.fixed_threshold=1.5"], "eval.fixed_threshold=1.5: expected a number in [0, 1]"),
        (["eval.on_no_validation_cases=skip"], "eval.on_no_validation_cases=skip: expected one of error, fixed"),
        (["eval.plots=1"], "eval.plots=1: expected true or false"),
        (
            ["baselines.which=[logistic,pcee]"],
            "baselines.which=[logistic, pcee]: expected a list, each one of logistic, lightgbm, logistic_all, "
            "lightgbm_all, pce, pce_recalibrated, age, zero_shot, cox, cox_all, logistic+llm, pce+llm (pcee: did you "
            "mean pce?)",
        ),
        (["baselines.logistic_c=[]"], "baselines.logistic_c=[]: expected a list of numbers > 0, not empty"),
        (
            ["baselines.lightgbm.num_leaves=[1]"],
            "baselines.lightgbm.num_leaves=[1]: expected a list of integers >= 2, not empty",
        ),
        (
            ["baselines.lightgbm.learning_rate=[1.5]"],
            "baselines.lightgbm.learning_rate=[1.5]: expected a list of numbers in (0, 1], not empty",
        ),
        (["baselines.lightgbm.max_trees=0"], "baselines.lightgbm.max_trees=0: expected an integer >= 1"),
        (["tracking.log_eids=maybe"], "tracking.log_eids=maybe: expected auto or true or false"),
        (["tracking.log_model=full"], "tracking.log_model=full: expected one of pyfunc, adapter, none"),
        # explain
        (["explain.n=0"], "explain.n=0: expected an integer >= 1"),
        (
            ["explain.variants=[median]"],
            "explain.variants=[median]: expected a list, each one of remove, median, containing remove, each once",
        ),
        (
            ["text.features=[age,sex]", "explain.features=[age,bmi]"],
            "explain.features names bmi, which is not part of the record (its parts: age, sex)",
        ),
        (
            ["text.history=on", "explain.features=[history:diagnosis]"],
            "explain.features names history:diagnosis, which is not part of the record (its parts: age, sex, "
            "ethnicity, townsend, bmi, waist, systolic_bp, diastolic_bp, smoking, pack_years, alcohol, activity, "
            "cholesterol, hdl, ldl, triglycerides, hba1c, glucose, crp, lipoprotein_a, cystatin_c, diabetes, "
            "cholesterol_medication, bp_medication, insulin, stroke_diagnosed, high_bp_diagnosed, "
            "family_heart_disease, family_stroke, self_reported_high_cholesterol, history:illnesses, "
            "history:operations, history:medications, history:diagnoses)",
        ),
        (
            ["data=seed_json", "data.path=/x.jsonl", "eval.explain=true"],
            "eval.explain=true: seed-JSON records are text only, with no parts to take out one at a time; use "
            "eval.explain=false",
        ),
    ],
)
def test_a_mistake_is_one_line_naming_the_key_the_value_and_what_is_allowed(overrides, message):
    with pytest.raises(CadftError) as err:
        validate(_compose(*overrides))
    assert str(err.value) == message


def test_treatment_features_pass_for_a_prevalent_task_when_allowed_or_removed():
    validate(_compose("task=hard_cad_prevalent", "data.allow_treatment_features=true"))
    validate(_compose("task=hard_cad_prevalent", *REQUIRED[("task", "hard_cad_prevalent")]))
    validate(_compose("task=hard_cad"))  # an incident outcome: treatment at baseline is a fair predictor


def test_a_feature_that_holds_the_outcome_is_refused():
    with pytest.raises(
        CadftError,
        match=r"data.features.heart_attack reads codes \[1\] of field 6150, which the task hard_cad_incident10",
    ):
        validate(_compose("+data.features.heart_attack={kind: flag, fields: [6150], codes: [1]}"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["model=qlor"], "model=qlor: no such option of model; allowed: full, lora, qlora (did you mean qlora?)"),
        (["+experiment=dem"], "experiment=dem: no such option of experiment; allowed: demo (did you mean demo?)"),
        (
            ["hydra/launcher=slurmm"],
            "hydra/launcher=slurmm: no such option of hydra/launcher; allowed: basic, slurm, submitit_local, "
            "submitit_slurm (did you mean slurm?)",
        ),
        (
            ["model=lora", "model=full"],
            "model=lora model=full: the group model is given more than once; choose one option",
        ),
        (
            ["-m", "model=lora", "seed=1,2", "model=full"],
            "model=lora model=full: the group model is given more than once; choose one option",
        ),
        (
            ["-m", "model=lora,qlor"],
            "model=qlor: no such option of model; allowed: full, lora, qlora (did you mean qlora?)",
        ),
        (["train.batch_sz=3"], "train.batch_sz: unknown key; did you mean train.batch_size?"),
        (
            ["train.batch_size=[1"],
            "train.batch_size=[1: not a valid override (no viable alternative at input '[1'); "
            "see https://hydra.cc/docs/advanced/override_grammar/basic/",
        ),
        (
            ["seed=1,2"],
            "seed=1,2: several values sweep only with -m; a list is key=[a,b], text with a comma is quoted: key='a,b'",
        ),
        (["~train.nothing"], "Could not delete from config. 'train.nothing' does not exist."),
        (["--config-dir", "/nonexistent/cadft"], "--config-dir /nonexistent/cadft: no such folder"),
        (["--nonsense"], "unrecognized arguments: --nonsense (see --help)"),
        (
            ["eval.threshold=youdn"],
            "eval.threshold=youdn: expected one of youden, max_f1, sensitivity, fixed (did you mean youden?)",
        ),
    ],
)
def test_command_line_mistakes_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_command_line("cadft train", "config", argv)
    assert exit_info.value.code == 2 and capsys.readouterr().err == f"cadft train: error: {message}\n"


def test_a_sweeps_values_are_checked_by_each_job_not_up_front():
    """A bad swept value is a FAILED job of the sweep (cadft.train.run), not a refused command line."""
    check_command_line("cadft train", "config", ["-m", "imbalance=oversample", "imbalance.positive_fraction=0.5,2"])
    with pytest.raises(CadftError, match=r"imbalance.positive_fraction=2: expected a number in"):
        validate(_compose("imbalance=oversample", "imbalance.positive_fraction=2"))


def test_help_and_cfg_are_left_to_hydra():
    for argv in (["--help"], ["--cfg", "job", "data=ukb"], ["--info"]):
        check_command_line("cadft train", "config", argv)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["eval.threshold=youdn"],
            "eval.threshold=youdn: expected one of youden, max_f1, sensitivity, fixed (did you mean youden?)",
        ),
        (["eval.thresold=max_f1"], "eval.thresold: unknown key; did you mean eval.threshold?"),
        (["eval.bootstrap=-5"], "eval.bootstrap=-5: expected an integer >= 0"),
        (["eval.threshold"], "eval.threshold: overrides are KEY=VALUE, e.g. eval.threshold=max_f1"),
        (["eval.plots.x=1"], "eval.plots is true or false: it has no key x"),
    ],
)
def test_eval_overrides_are_checked_on_their_own(overrides, message):
    with pytest.raises(CadftError) as err:
        check_overrides(overrides)
    assert str(err.value) == message


def test_good_eval_overrides_pass():
    check_overrides(
        [
            "eval.threshold=max_f1",
            "eval.bootstrap=2000",
            "data.path=/data/ukb.csv",
            "backbone.path=org/model",
            "zero.offload_param=cpu",
            "data.features.age.decimals=0",
        ]
    )
