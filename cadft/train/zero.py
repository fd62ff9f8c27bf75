"""DeepSpeed ZeRO (`zero=none|2|3`): the `zero` config group as a DeepSpeed config, checked before training starts.

Batch size, micro batch, gradient accumulation, bf16/fp16 and gradient clipping are "auto": the Trainer fills them
from TrainingArguments (the `train` and `model` groups), so no setting has two sources. The optimizer and the
scheduler stay the Trainer's (model.optim, train.lr_scheduler), except that offload_optimizer=cpu needs DeepSpeed's
own CPU AdamW (DeepSpeed refuses other optimizers there), given the Trainer's learning rate, betas, eps and weight
decay. Stage 3 gathers the partitioned weights when the model is saved, so the saved adapter or model is complete.

Combinations that cannot work are refused before data or model are loaded: by the config check (cadft.config, on the
command line) offload_param with stage 2, stage 3 without gathering weights on save and offloading the optimizer with a
non-AdamW model.optim; by `deepspeed_config`, which knows the device, qlora + stage 3 with quant_storage other than the
compute dtype, 16-bit weights outside DeepSpeed's bf16 mode (fp16 anywhere, bf16 without CUDA) and train.device=cpu
while GPUs are visible.

Checked on CPU (2 processes over gloo, tiny backbone): lora, full and qlora under ZeRO-2 and ZeRO-3, with torchrun,
the deepspeed launcher and a single process, and ZeRO-3 with optimizer and weights offloaded. docs/scale_out.md has
the commands.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

import torch

from cadft.config.schema import Model, Zero
from cadft.config.typecheck import plain
from cadft.errors import CadftError
from cadft.train.distributed import use_gloo_for_deepspeed_without_cuda
from cadft.train.model import load_model, resolve_dtype

AUTO = "auto"
ZERO_KEYS = ("overlap_comm", "contiguous_gradients", "reduce_bucket_size")
STAGE3_KEYS = (
    "stage3_prefetch_bucket_size",
    "stage3_param_persistence_threshold",
    "stage3_gather_16bit_weights_on_model_save",
)


def deepspeed_config(zero_cfg: Zero, model: Model, device: str) -> dict | None:
    """The DeepSpeed config for TrainingArguments(deepspeed=...); None for zero=none."""
    zero = plain(zero_cfg)
    if zero["stage"] is None:
        return None
    check_device(zero, model, device)
    optimization = {"stage": zero["stage"], **{key: zero[key] for key in ZERO_KEYS}}
    if zero["stage"] == 3:
        optimization |= {key: zero[key] for key in STAGE3_KEYS}
        optimization["offload_param"] = _offload(zero["offload_param"], device)
    optimization["offload_optimizer"] = _offload(zero["offload_optimizer"], device)
    config = {
        "train_batch_size": AUTO,
        "train_micro_batch_size_per_gpu": AUTO,
        "gradient_accumulation_steps": AUTO,
        "gradient_clipping": AUTO,
        "bf16": {"enabled": AUTO},
        "fp16": {"enabled": AUTO},
        "zero_optimization": optimization,
        "steps_per_print": 10**9,  # the Trainer logs progress; DeepSpeed's own prints would repeat it
    }
    if zero["offload_optimizer"] == "cpu":
        config["optimizer"] = {"type": "AdamW", "params": dict.fromkeys(("lr", "betas", "eps", "weight_decay"), AUTO)}
    return config


def check_device(zero: Mapping, model: Model, device: str) -> None:
    """What the config alone cannot tell (its keys and their combinations are checked by cadft.config): the GPUs this
    process sees and the dtypes on this device."""
    stage = zero["stage"]
    if device == "cpu" and torch.cuda.is_available():
        raise CadftError(
            "train.device=cpu with zero: DeepSpeed would still use the visible GPUs; "
            "hide them (CUDA_VISIBLE_DEVICES=) or use train.device=auto"
        )
    _check_dtypes(stage, model, device)


def ready_process(uses_deepspeed: bool) -> None:
    """What this process needs before TrainingArguments starts DeepSpeed, or does not: with DeepSpeed, a world of one
    when no launcher made one (DeepSpeed always runs in a process group, and would otherwise look for MPI) and the
    accelerate fix for CPUs; without, accelerate's switch ACCELERATE_USE_DEEPSPEED off, which a zero=2|3 job earlier
    in this process (a sweep) leaves on, so that TrainingArguments would run DeepSpeed with default settings."""
    if not torch.cuda.is_available():
        # DeepSpeed, imported by accelerate either way, warns that it "was unable to detect" an accelerator when it
        # falls back to the CPU; without CUDA the CPU is the accelerator, which naming it says without a warning.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if not uses_deepspeed:
        os.environ.pop("ACCELERATE_USE_DEEPSPEED", None)
        return
    if "LOCAL_RANK" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        os.environ.update(
            {
                "RANK": "0",
                "LOCAL_RANK": "0",
                "WORLD_SIZE": "1",
                "LOCAL_WORLD_SIZE": "1",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            }
        )
    use_gloo_for_deepspeed_without_cuda()


def keep_4bit_layout(model: torch.nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference, which breaks under ZeRO-3.

    On CPUs with AVX512-BF16 a Linear4bit in eval mode rewrites its weight in place into a CPU layout and marks its
    quant state so (bitsandbytes 0.50). Under ZeRO-3 that weight is a copy gathered for one forward pass: the
    partitions keep the old layout while the quant state says the new one, and the next checkpoint fails
    (`assert packed_weight.dtype == torch.uint8`). Without the flag the layers keep the training layout (slower
    CPU evaluation). No effect on GPUs or on models without 4-bit layers.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def one_trainable_dtype(model: torch.nn.Module) -> None:
    """Give every trainable weight the same dtype, which ZeRO-3 needs: it flattens them into one buffer.

    Over a bf16 backbone peft keeps LoRA adapters in fp32 (autocast_adapter_dtype) while the score head stays bf16.
    DeepSpeed before 0.19.2 cast the whole model to bf16 and hid this; since then stage 3 fails in `defragment`
    with a bare AssertionError (deepspeedai/DeepSpeed#8072, worked around the same way in huggingface/trl#6091).
    The fp32 weights go down to the narrowest dtype in use: DeepSpeed's bf16 mode keeps fp32 master copies of
    them for the optimizer. Models whose trainable weights already share a dtype (fp32 on CPU, qlora) are untouched.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    dtypes = {p.dtype for p in trainable}
    if len(dtypes) > 1:
        narrowest = min(dtypes, key=lambda dtype: torch.finfo(dtype).bits)
        for param in trainable:
            param.data = param.data.to(narrowest)


def load_unpartitioned(model_dir: Path, device: str) -> torch.nn.Module:
    """A saved model, whole, in this process alone. During a ZeRO-3 run transformers would otherwise partition it
    while loading (zero.Init) and wait for ranks that have moved on."""
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    return load_model(model_dir, device=device)


def _check_dtypes(stage: int, model: Model, device: str) -> None:
    """16-bit weights train correctly under ZeRO only in DeepSpeed's bf16 mode, which cadft turns on for bf16
    on CUDA."""
    allowed = (torch.float32, torch.bfloat16) if device == "cuda" else (torch.float32,)
    names = "fp32 or bf16" if device == "cuda" else "fp32 (DeepSpeed's bf16 mode needs CUDA)"
    dtypes = {"model.dtype": resolve_dtype(model.dtype, device)}
    quant = model.quantization
    if quant:
        compute = resolve_dtype(quant.compute_dtype, device)
        storage = compute if quant.quant_storage == AUTO else resolve_dtype(quant.quant_storage, device)
        if stage == 3 and storage != compute:
            raise CadftError(
                f"model=qlora with zero=3 needs model.quantization.quant_storage=auto (the compute dtype): ZeRO-3 "
                f"partitions the packed 4-bit weights together with the others, so they must share one dtype "
                f"(quant_storage={quant.quant_storage}, compute_dtype={quant.compute_dtype})"
            )
        dtypes["model.quantization.compute_dtype"] = compute
    for key, dtype in dtypes.items():
        if dtype not in allowed:
            raise CadftError(f"{key} is {str(dtype).removeprefix('torch.')} on {device}; with zero it must be {names}")


def _offload(target: str, device: str) -> dict:
    # Pinned host memory speeds up GPU<->CPU copies; a CPU-only machine has none.
    return {"device": target, "pin_memory": device == "cuda"} if target != "none" else {"device": "none"}
