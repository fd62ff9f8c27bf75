"""Fine-tuning strategies: build a 2-label sequence classifier from a backbone for `model=lora|qlora|full`,
save it, and load it back for inference.

One code path; the config decides three things: whether the frozen backbone is 4-bit (qlora), whether LoRA
adapters are added (lora, qlora) and so which parameters train. With adapters, the `score` head is trained in
full and saved with them (`modules_to_save`); it starts random (head=classifier) or as the language-model head's
answer rows (head=verbalizer, cadft.train.head), and `zero_shot_model` is the untrained backbone with the latter. A
checkpoint folder also holds `cadft_model.json`, which says how
to rebuild the model (strategy, base folder, dtype, quantization), so loading needs no config.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    BitsAndBytesConfig,
    PreTrainedTokenizerBase,
)

from cadft.config.schema import Head, HeadVerbalizer, Model
from cadft.config.typecheck import plain
from cadft.errors import CadftError
from cadft.files import write_text_atomic
from cadft.layout import CHECKPOINT_INFO
from cadft.quiet import without_log_records
from cadft.train.head import init_head

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DTYPE_CHOICES = ("auto", *DTYPES)
ALL_LINEAR = "all-linear"
HEAD = "score"  # the classification head of transformers' *ForSequenceClassification decoders
NUM_LABELS = 2
# Set on a built model; write_checkpoint_info writes it to CHECKPOINT_INFO.
BUILD_INFO_ATTR = "cadft_build_info"
MERGED_ATTR = "cadft_adapters_merged"


def build_model(
    model_cfg: Model,
    backbone_path: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    head: Head,
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> torch.nn.Module:
    """A trainable classifier: adapters + score head (lora, qlora) or every weight (full); the score head starts as
    `head` says (cadft.train.head: random, or the language-model head's answer rows)."""
    info = {
        "strategy": model_cfg.name,
        "base_model": backbone_path,
        "dtype": model_cfg.dtype,
        "quantization": plain(model_cfg.quantization),
        "pad_token_id": tokenizer.pad_token_id,
        "trust_remote_code": trust_remote_code,
    }
    model = _load_base(info, device, dtype_name=model_cfg.dtype)  # bitsandbytes' backend is checked there
    init_head(model, tokenizer, head, backbone_path, HEAD)  # before peft copies the head into modules_to_save
    if model_cfg.gradient_checkpointing:
        # Non-reentrant: works with frozen inputs (no enable_input_require_grads hack) and with DeepSpeed.
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if model_cfg.lora is not None:
        from peft import LoraConfig, get_peft_model

        lora = model_cfg.lora
        _check_target_modules(model, lora.target_modules)
        with _peft_reads_deprecated_property():
            model = get_peft_model(
                model,
                LoraConfig(
                    task_type="SEQ_CLS",
                    r=lora.r,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=lora.target_modules,
                    modules_to_save=[HEAD],
                ),
            )
    setattr(model, BUILD_INFO_ATTR, info)
    return model


def zero_shot_model(
    backbone_path: str,
    tokenizer: PreTrainedTokenizerBase,
    head: HeadVerbalizer,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    trust_remote_code: bool = False,
) -> torch.nn.Module:
    """The backbone as it is, its score head set from the answer words (cadft.train.head), frozen: the zero-shot
    baseline,
    in `dtype` (baselines.zero_shot_dtype)."""
    info = {
        "strategy": "full",
        "base_model": backbone_path,
        "dtype": dtype,
        "quantization": None,
        "pad_token_id": tokenizer.pad_token_id,
        "trust_remote_code": trust_remote_code,
    }
    model = _load_base(info, device, dtype_name=dtype)
    init_head(model, tokenizer, head, backbone_path, HEAD)
    model.requires_grad_(False)
    return model.eval()


def write_checkpoint_info(model: torch.nn.Module, out_dir: str | Path) -> None:
    """CHECKPOINT_INFO beside weights saved elsewhere (the Trainer's own checkpoints), so load_model can read them."""
    info = getattr(model, BUILD_INFO_ATTR, None)
    if info is None:
        raise CadftError("the model was not made by cadft.train.model.build_model: nothing says how to rebuild it")
    write_text_atomic(Path(out_dir) / CHECKPOINT_INFO, json.dumps(info, indent=2) + "\n")


def load_model(checkpoint_dir: str | Path, *, device: str = "cpu", dtype: str | None = None) -> torch.nn.Module:
    """A saved model (weights + CHECKPOINT_INFO, as cadft-train saves it), frozen and in eval mode. `dtype` (auto | bf16
    | fp16 | fp32) overrides the trained one."""
    checkpoint = Path(checkpoint_dir)
    info_file = checkpoint / CHECKPOINT_INFO
    if not info_file.is_file():
        raise CadftError(f"{checkpoint} is not a cadft checkpoint: {CHECKPOINT_INFO} is missing")
    info = json.loads(info_file.read_text())
    dtype_name = dtype or info["dtype"]
    if info["strategy"] == "full":
        model = _load_base({**info, "base_model": str(checkpoint)}, device, dtype_name)
    else:
        from peft import PeftModel

        base = _load_base(info, device, dtype_name)
        with _peft_reads_deprecated_property():
            model = PeftModel.from_pretrained(base, checkpoint)
    setattr(model, BUILD_INFO_ATTR, info)
    model.requires_grad_(False)  # for inference; resuming training goes through the Trainer's own checkpoints
    return merged_for_scoring(model.eval())


def merged_for_scoring(model: torch.nn.Module) -> torch.nn.Module:
    """LoRA adapters folded into the base weights (not 4-bit ones: that would round them): one matmul per layer
    instead of three, ~1.15x faster scoring on CPU, probabilities within ~1e-5 of the unmerged model's."""
    if getattr(model, BUILD_INFO_ATTR, {}).get("strategy") == "lora" and not getattr(model, MERGED_ATTR, False):
        model.merge_adapter()  # peft's LoraModel (through the PeftModel); unmerge_adapter() would undo it
        setattr(model, MERGED_ATTR, True)
    return model


def trainable_parameter_summary(model: torch.nn.Module) -> dict:
    """Trainable and total parameter counts; a 4-bit weight counts its unpacked size, not its packed storage."""
    trainable = total = 0
    for param in model.parameters():
        quant_state = getattr(param, "quant_state", None)  # bitsandbytes Params4bit keeps the original shape there
        count = quant_state.shape.numel() if quant_state is not None else param.numel()
        total += count
        trainable += count if param.requires_grad else 0
    return {"trainable": trainable, "total": total, "trainable_fraction": trainable / total if total else 0.0}


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """`auto` is bf16 on CUDA and fp32 elsewhere (fp32 is faster than bf16 on CPU)."""
    _check_choice("dtype", name, DTYPE_CHOICES)
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return DTYPES[name]


def _load_base(info: Mapping, device: str, dtype_name: str) -> torch.nn.Module:
    """The pretrained folder as a 2-label classifier on `device`; 4-bit and frozen if `info['quantization']` is set."""
    quant = info["quantization"]
    dtype = resolve_dtype(dtype_name, device)
    if quant:
        _require_bitsandbytes(device)
    # No device_map even for 4-bit: DeepSpeed ZeRO-3 must place the weights itself (transformers then
    # quantizes on the current CUDA device, or on the CPU without CUDA).
    with without_log_records("transformers.modeling_utils", _expected_load_report):
        model = AutoModelForSequenceClassification.from_pretrained(
            info["base_model"],
            num_labels=NUM_LABELS,
            dtype=dtype,
            quantization_config=_bnb_config(quant, device) if quant else None,
            trust_remote_code=info["trust_remote_code"],
            use_kernels=False,  # transformers >= 5.25 defaults to True: layers replaced by code fetched from the Hub
        )
    model.config.pad_token_id = info["pad_token_id"]
    model.config.use_cache = False  # a classifier never generates; also silences the checkpointing warning
    if quant:
        from peft import prepare_model_for_kbit_training

        # Freezes the base and upcasts its non-4-bit weights to fp32 (in training and reloading alike).
        # Checkpointing is enabled by build_model for every strategy (peft would call a deprecated method).
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model.to(device)


def _bnb_config(quant: Mapping, device: str) -> BitsAndBytesConfig:
    compute_dtype = resolve_dtype(quant["compute_dtype"], device)
    storage = compute_dtype if quant["quant_storage"] == "auto" else resolve_dtype(quant["quant_storage"], device)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant["quant_type"],
        bnb_4bit_use_double_quant=bool(quant["double_quant"]),
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=storage,
        # The head is trained in full (modules_to_save); its 2 outputs would also break the CPU 4-bit kernel.
        llm_int8_skip_modules=[HEAD],
    )


def _require_bitsandbytes(device: str) -> None:
    try:
        import bitsandbytes
    except ImportError as error:
        raise CadftError(
            "model=qlora needs bitsandbytes: pip install 'bitsandbytes>=0.48,<0.51' (or use model=lora)"
        ) from error
    device_type = torch.device(device).type
    supported = sorted(getattr(bitsandbytes, "supported_torch_devices", ()))
    if device_type not in supported:
        raise CadftError(
            f"model=qlora: bitsandbytes {bitsandbytes.__version__} has no backend for device {device!r} "
            f"(it supports: {', '.join(supported) or 'none'}); use model=lora or model=full"
        )


def _check_target_modules(model: torch.nn.Module, targets: str | list[str]) -> None:
    """Every listed name must match a Linear (peft matches a list entry against the end of a module's name)."""
    if targets == ALL_LINEAR:
        return
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and name != HEAD]
    unmatched = [
        target for target in targets if not any(name == target or name.endswith("." + target) for name in linear)
    ]
    if unmatched:
        leaf_names = sorted({name.rsplit(".", 1)[-1] for name in linear})
        raise CadftError(
            f"model.lora.target_modules {unmatched} match no linear layer of the backbone; "
            f"its linear layers are named: {', '.join(leaf_names)} (or use {ALL_LINEAR!r})"
        )


def _check_choice(key: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise CadftError(f"{key}={value!r} is not one of: {', '.join(map(str, allowed))}")


def _expected_load_report(message: str) -> bool:
    """transformers' load report when a causal language model is loaded as a sequence classifier and the report lists
    only its two expected differences: the 2-label score head is missing (cadft sets it right after loading: random
    for head=classifier, the answer words' rows for head=verbalizer, so "newly initialized ... consider training" says
    nothing a user can act on) and an untied language-model head goes unused. Any other key keeps the report."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    if "LOAD REPORT" not in message:
        return False
    keys = [(key, status) for key, status in re.findall(r"^(\S+)\s*\|\s*(\w+)", message, re.M) if key != "Key"]
    expected = {(f"{HEAD}.", "MISSING"), ("lm_head.", "UNEXPECTED")}
    return all(any(key.startswith(prefix) and status == state for prefix, state in expected) for key, status in keys)


@contextlib.contextmanager
def _peft_reads_deprecated_property():
    """peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5.25 deprecates with a FutureWarning on
    every adapter model: an upstream mismatch, not something a cadft user can change."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield
