"""The one check of a composed config, run by every entry point before it reads or writes a file: `validate` returns the
typed `Config` (cadft.config.schema) that every stage receives, or raises a CadftError of one line naming the key,
the value and what is allowed:

    eval.threshold=youdn: expected one of youden, max_f1, sensitivity, fixed (did you mean youden?)
    data.featurs: unknown key; did you mean data.features?

Types and choices come first (cadft.config.typecheck against the schema), then the rules between keys, then the
domain checks of the phenotype, feature, split and text specs, done by the modules that use them (cadft.data.task,
cadft.data.features, cadft.data.split, cadft.data.text). A saved run's config.yaml goes through the same check
(`load`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from cadft.config.schema import CLASSIFIER, BackboneTiny, Config
from cadft.config.typecheck import build, check, describe, first_line, fits, hint_at, plain, show, suggestion
from cadft.errors import CadftError

TINY_SIZE_MULTIPLE = 32  # bitsandbytes' CPU 4-bit kernel needs every Linear in/out size to be a multiple of it


def validate(cfg) -> Config:
    """The typed config of a composed one (a DictConfig or a plain dict; a `hydra` node is ignored), or a CadftError
    (one line) for the first thing wrong with it."""
    values = _plain(cfg)
    check(values, Config, "")
    config = build(values, Config)
    _check_rules(config)
    return config


def validate_group(cfg, name: str):
    """One group of a composed config, typed (for Hydra callbacks and failed sweep jobs, whose other groups may be
    wrong)."""
    return _typed_group(_plain(cfg).get(name), name)


def load_group_file(path: Path, name: str):
    """A config group's option file, typed: a shipped option (conf/<group>/<option>.yaml) composed as a command would
    compose it (its defaults list and interpolations resolved), any other file read on its own."""
    from omegaconf import OmegaConf

    from cadft.config import CONF_DIR
    from cadft.config.compose import compose

    path = Path(path)
    if path.parent.resolve() == (CONF_DIR / name).resolve():
        return validate_group(compose("config", [f"{name}={path.stem}"]), name)
    return _typed_group(OmegaConf.to_container(OmegaConf.load(path), resolve=True), name)


def _typed_group(values, name: str):
    hint = hint_at(Config, name)
    check(values, hint, name)
    return build(values, hint)


def load(path: Path, overrides: list[str] = ()) -> Config:
    """A saved run's resolved config (config.yaml) with KEY=VALUE overrides, validated."""
    from omegaconf import OmegaConf

    from cadft.config import CONF_DIR

    saved = OmegaConf.load(path)
    if "head" not in saved:  # saved before the head group existed: those runs used the classifier
        saved.head = plain(CLASSIFIER)
    if "explain" not in saved:  # saved before the explain group existed: its shipped settings
        saved.explain = OmegaConf.load(CONF_DIR / "explain" / "default.yaml")
    return validate(OmegaConf.merge(saved, OmegaConf.from_dotlist(list(overrides))))


def to_yaml(config: Config) -> str:
    """The config as a run saves it (config.yaml): every key, resolved."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(plain(config)))


def with_absolute_paths(config: Config) -> Config:
    """The config's file paths resolved against the current directory: a run's saved config then means the same files
    from anywhere (cadft eval, a sweep job, another rank)."""

    def absolute(value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser().resolve())

    paths = replace(
        config.paths,
        **{key: absolute(getattr(config.paths, key)) for key in ("output_dir", "prepared_dir", "cache_dir")},
    )
    data = replace(
        config.data, **{key: absolute(getattr(config.data, key)) for key in ("path", "oracle_path", "withdrawals")}
    )
    return replace(config, paths=paths, data=data)


def check_overrides(overrides: list[str]) -> None:
    """KEY=VALUE overrides of a saved run config (cadft eval), checked on their own before any file is read: each key
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
        raise CadftError(
            f"{getattr(err, 'full_key', '') or 'config'}: cannot resolve the value ({first_line(err)})"
        ) from None


# --- rules between keys -----------------------------------------------------------------------------------------


def _check_rules(c: Config) -> None:
    model, imbalance, zero, train, data = c.model, c.imbalance, c.zero, c.train, c.data
    quantized, adapters = model.name == "qlora", model.name != "full"
    if (model.quantization is not None) != quantized:
        raise CadftError(
            f"model.quantization must be {'set' if quantized else 'null'} for model.name={model.name} "
            f"(model={model.name} sets it)"
        )
    if (model.lora is not None) != adapters:
        raise CadftError(
            f"model.lora must be {'set' if adapters else 'null'} for model.name={model.name} "
            f"(model={model.name} sets it)"
        )
    if imbalance.method == "oversample" and imbalance.positive_fraction is None:
        raise CadftError("imbalance.positive_fraction=null: imbalance=oversample needs a number in (0, 1), e.g. 0.25")
    if imbalance.method == "weighted" and imbalance.class_weights is None:
        raise CadftError(
            "imbalance.class_weights=null: imbalance=weighted needs inverse_frequency or [w_control, w_case]"
        )
    if zero.stage is not None and zero.offload_optimizer == "cpu" and "adamw" not in model.optim.lower():
        raise CadftError(
            f"zero.offload_optimizer=cpu runs DeepSpeed's CPU AdamW in place of model.optim={model.optim}: "
            "use an AdamW optimizer (adamw_torch) or zero.offload_optimizer=none"
        )
    if train.save_steps % train.eval_steps:
        raise CadftError(
            f"train.save_steps={train.save_steps} must be a multiple of train.eval_steps={train.eval_steps} "
            "(the best validation checkpoint is kept)"
        )
    if isinstance(c.backbone, BackboneTiny):
        _check_tiny(c.backbone)
    if data.format == "seed_json" and not (data.text_key and data.label_key):
        raise CadftError("data.format=seed_json needs data.text_key and data.label_key (data=seed_json sets them)")
    if data.format == "seed_json" and c.text.history == "on":
        raise CadftError(
            "text.history=on: seed-JSON records are text already, with no history fields to write; use text.history=off"
        )
    if data.format == "seed_json" and (train.shuffle_feature_order or c.eval.test_time_orders > 1):
        raise CadftError(
            "train.shuffle_feature_order / eval.test_time_orders: seed-JSON records are text already, with no "
            "features to write in another order; use false / 1"
        )
    if data.format == "seed_json" and c.task.censoring == "ipcw":
        raise CadftError(
            "task.censoring=ipcw: seed-JSON records carry no follow-up to weight; use task.censoring=exclude"
        )
    if data.format == "seed_json" and c.eval.explain:
        raise CadftError(
            "eval.explain=true: seed-JSON records are text only, with no parts to take out one at a time; "
            "use eval.explain=false"
        )
    if data.format == "seed_json" and data.split.by != "eid":
        raise CadftError(
            f"data.split.by={data.split.by}: seed-JSON records carry no assessment centre; use data.split.by=eid"
        )
    _check_specs(c)


def _check_tiny(backbone: BackboneTiny) -> None:
    hidden, heads = backbone.hidden_size, backbone.num_attention_heads
    if hidden % heads:
        raise CadftError(f"backbone.hidden_size={hidden} is not divisible by backbone.num_attention_heads={heads}")
    sizes = {
        "hidden_size": hidden,
        "intermediate_size": backbone.intermediate_size,
        "vocab_size": backbone.vocab_size,
        "num_key_value_heads * head_dim": backbone.num_key_value_heads * (hidden // heads),
    }
    bad = {key: size for key, size in sizes.items() if size % TINY_SIZE_MULTIPLE}
    if bad:
        raise CadftError(
            f"backbone: tiny backbone sizes must be multiples of {TINY_SIZE_MULTIPLE} (bitsandbytes CPU 4-bit): {bad}"
        )


def _check_specs(c: Config) -> None:
    """The phenotype, split, feature and text specs, checked by the modules that use them."""
    from cadft.data.features import check_no_leakage, check_no_treatment_proxies, parse_features
    from cadft.data.history import check_no_treatment_history
    from cadft.data.split import check_fractions, held_out_groups
    from cadft.data.task import Definition
    from cadft.data.text import check_item, check_text_options, select_features
    from cadft.explain.occlusion import record_parts

    definition = Definition.from_config(c.task)
    check_fractions(c.data.split.fractions)
    held_out_groups(c.data.split)
    if c.data.format == "seed_json":
        return
    features = parse_features(c.data.features)
    check_no_leakage(features, definition)
    check_no_treatment_proxies(features, definition, c.data.allow_treatment_features)
    record_parts(select_features(features, c.text.features), c.text, c.explain.features)
    check_item(c.text.item)
    check_text_options(c.text, features)
    if c.text.history == "on":
        check_no_treatment_history(definition, c.data.allow_treatment_features)
