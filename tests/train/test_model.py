"""Strategies on the tiny backbone: training moves the right weights, save/load and padding keep predictions."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cadft.config.schema import CLASSIFIER
from cadft.errors import CadftError
from cadft.train.model import build_model, load_model, trainable_parameter_summary, write_checkpoint_info
from tests.train.conftest import compose_group

STRATEGIES = ("lora", "qlora", "full")
# Different lengths, so a batch is padded.
RECORDS = [
    "The sex is Male. The age at recruitment is 63 years.",
    "Sex: Female",
    "The body mass index (BMI) is 27.4 kg/m2. The smoking status is Previous. Cholesterol is 5.2 mmol/L.",
    "The age at recruitment is 48 years.",
]
LABELS = torch.tensor([1, 0, 1, 0])


def build(strategy: str, tiny, overrides: list[str] = ()):
    folder, tokenizer = tiny
    torch.manual_seed(0)
    return build_model(compose_group(f"model/{strategy}", overrides), folder, tokenizer, head=CLASSIFIER)


def train_steps(model, tokenizer, steps: int = 2) -> None:
    """A few real AdamW steps (a high rate, so every trained weight visibly moves), then eval mode."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = tokenizer(RECORDS, padding=True, return_tensors="pt")
    model.train()
    for _ in range(steps):
        model(**batch, labels=LABELS).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@torch.no_grad()
def batched_logits(model, tokenizer) -> torch.Tensor:
    return model(**tokenizer(RECORDS, padding=True, return_tensors="pt")).logits


def score_weight(model) -> torch.Tensor:
    """The head actually used in forward (with adapters: peft's trainable copy)."""
    return next(p for name, p in model.named_parameters() if ".score." in f".{name}" and "original_module" not in name)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_reload_reproduces_trained_logits(strategy, tiny, tmp_path):
    model = build(strategy, tiny)
    initial_score = score_weight(model).detach().clone()
    train_steps(model, tiny[1])
    assert not torch.equal(score_weight(model), initial_score)
    if strategy != "full":
        lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
        assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # adapters left their zero init
    before = batched_logits(model, tiny[1])

    save(model, tmp_path / "ckpt", tokenizer=tiny[1])
    reloaded = load_model(tmp_path / "ckpt")
    torch.testing.assert_close(batched_logits(reloaded, tiny[1]), before, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in reloaded.parameters())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_padding_does_not_change_a_prediction(strategy, tiny):
    model = build(strategy, tiny)
    train_steps(model, tiny[1])
    with torch.no_grad():
        one_at_a_time = torch.cat([model(**tiny[1]([r], return_tensors="pt")).logits for r in RECORDS])
    torch.testing.assert_close(batched_logits(model, tiny[1]), one_at_a_time, rtol=0, atol=1e-5)


@pytest.mark.parametrize("strategy", ["lora", "qlora"])
def test_score_head_is_trained_and_saved_with_the_adapter(strategy, tiny, tmp_path):
    model = build(strategy, tiny)
    assert score_weight(model).requires_grad
    assert not any(
        p.requires_grad for name, p in model.named_parameters() if "lora_" not in name and "score" not in name
    )
    train_steps(model, tiny[1])
    save(model, tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    saved_score = [name for name in saved if "score" in name]
    assert saved_score and torch.equal(saved[saved_score[0]], score_weight(model).detach())
    assert not (tmp_path / "model.safetensors").exists()  # only the adapter, not the backbone


def test_qlora_quantizes_the_backbone_but_not_the_head(tiny):
    import bitsandbytes as bnb

    model = build("qlora", tiny)
    quantized = [name for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert any("q_proj" in name for name in quantized) and any("down_proj" in name for name in quantized)
    assert not any("score" in name for name in quantized)
    assert model.base_model.model.is_activation_checkpointing  # qlora.yaml turns it on


def test_trainable_parameter_summary(tiny):
    full, lora = trainable_parameter_summary(build("full", tiny)), trainable_parameter_summary(build("lora", tiny))
    assert full["trainable"] == full["total"] > 0
    assert 0 < lora["trainable"] < lora["total"]
    # 4-bit weights count as their unpacked size: qlora and lora hold the same number of weights.
    assert trainable_parameter_summary(build("qlora", tiny))["total"] == lora["total"]


def test_listed_target_modules_get_adapters(tiny):
    model = build("lora", tiny, ["lora.target_modules=[q_proj,v_proj]"])
    adapted = {name.split(".")[-1] for name, m in model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"q_proj", "v_proj"}


def test_target_modules_matching_nothing_are_rejected(tiny):
    with pytest.raises(CadftError, match=r"target_modules \['query_key_value'\] match no linear.*q_proj"):
        build("lora", tiny, ["lora.target_modules=[q_proj,query_key_value]"])


def test_qlora_without_a_bitsandbytes_backend_is_rejected(tiny, monkeypatch):
    import bitsandbytes

    monkeypatch.setattr(bitsandbytes, "supported_torch_devices", {"cuda"})
    with pytest.raises(CadftError, match=r"no backend for device 'cpu'.*model=lora"):
        build("qlora", tiny)


def test_load_model_rejects_a_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CadftError, match=r"cadft_model\.json"):
        load_model(tmp_path)


def save(model, folder, tokenizer=None) -> None:
    """As cadft-train saves a model: the Trainer's save_pretrained, the tokenizer, then cadft_model.json."""
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    write_checkpoint_info(model, folder)


@pytest.mark.parametrize("strategy", ["lora", "full"])
def test_no_layer_is_replaced_by_code_from_the_hub(strategy, tiny):
    """transformers >= 5.25 loads with use_kernels=True unless told otherwise: on CUDA it swaps layers for kernels
    downloaded from the Hub (an offline GPU node fails to load; an online one runs remote code). cadft turns it off."""
    model = build(strategy, tiny)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    assert base.use_kernels is False
