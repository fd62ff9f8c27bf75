"""Backbone presets (conf/backbone/llama3_8b.yaml, ...): each composes with every strategy and both heads, and its
settings train a step on a tiny random model of the same architecture, built offline (the real weights are not here)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from cadft.config import CONF_DIR
from cadft.config.validate import load_group_file, validate
from cadft.train.backbone import load_tokenizer, resolve_backbone
from cadft.train.head import encode
from cadft.train.model import build_model

ARCHITECTURE = {"llama3_8b": "llama", "mistral_7b": "mistral", "qwen2_5_7b": "qwen2", "qwen2_5_1_5b": "qwen2"}
RECORDS = [
    "The age at recruitment is 63 years. The sex is Female.",
    "The age at recruitment is 41 years. The sex is Male.",
]


@pytest.mark.parametrize("preset", sorted(ARCHITECTURE))
def test_a_preset_trains_a_step_with_every_strategy_on_a_tiny_model_of_its_architecture(
    make_config, compose_config, cache_dir, preset
):
    tiny = make_config(f"backbone.architecture={ARCHITECTURE[preset]}").backbone
    folder = resolve_backbone(tiny, cache_dir)
    assert OmegaConf.load(f"{folder}/config.json").model_type == ARCHITECTURE[preset]
    for strategy in ("lora", "qlora", "full"):
        for head in ("classifier", "verbalizer"):
            cfg = validate(
                compose_config(f"backbone={preset}", f"backbone.path={folder}", f"model={strategy}", f"head={head}")
            )
            preset_cfg = load_group_file(CONF_DIR / "backbone" / f"{preset}.yaml", "backbone")
            defaults = getattr(preset_cfg.strategies, strategy)
            assert (cfg.train.batch_size, cfg.train.gradient_accumulation_steps, cfg.model.gradient_checkpointing) == (
                defaults.batch_size,
                defaults.gradient_accumulation_steps,
                defaults.gradient_checkpointing,
            )
            assert cfg.train.max_length == preset_cfg.max_length
            if strategy != "full":
                assert list(cfg.model.lora.target_modules) == list(preset_cfg.lora_target_modules)
            _one_step(cfg, folder)


def _one_step(cfg, folder: str) -> None:
    torch.manual_seed(0)
    tokenizer = load_tokenizer(cfg.backbone, cfg.paths.cache_dir)
    model = build_model(cfg.model, folder, tokenizer, head=cfg.head).train()
    batch = tokenizer.pad(
        {"input_ids": encode(RECORDS, tokenizer, cfg.head, int(cfg.train.max_length)).input_ids}, return_tensors="pt"
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    loss = torch.nn.functional.cross_entropy(model(**batch).logits.float(), torch.tensor([1, 0]))
    loss.backward()
    torch.optim.AdamW(trainable, lr=1e-3).step()
    assert torch.isfinite(loss) and all(not torch.equal(a, b) for a, b in zip(before, trainable))
