"""Benchmark: LoRA training and scoring throughput on CPU, cadft's configuration against the seed project's,
on the same records and backbone, measured side by side in one run.

    .venv/bin/python bench/train_throughput.py [--backbones tiny smollm2_135m] [--records 512] [--train-steps 12]
                                               [--features age sex ...]   (default: every feature; the demo uses 9)

cadft:  the record text only; batches of similar length (cadft.train.imbalance.GroupedSampler); dynamic padding;
        scoring sorted by length (cadft.eval.score).
seed:   a fixed instruction paragraph before every record (the seed project's README prompt); dynamic padding
        without length grouping; random batch order for training and scoring.
verbalizer: cadft's batching with head=verbalizer's prompt as the demo sets it (chat template, empty system turn,
        the question after the record): what reading the model's own Yes/No answer costs per record.

Reported per backbone and configuration: examples/s and tokens/s (real tokens) in training and scoring, tokens
per participant, the padding fraction (pad tokens / processed tokens), and achieved FLOP/s as a ratio to a
torch.matmul microbenchmark of the same width measured in the same run. FLOPs count processed tokens
(padding included: the hardware does that work) at 2 x parameters per token forward and, for LoRA training,
4 x parameters (activation gradients flow through the frozen weights; their weight gradients are skipped).
Targets: padding < 5%; cadft examples/s >= 1.5x seed in training and scoring; FLOP/s >= 60% of matmul.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
SEED_PROMPT = (
    "You are a cardiovascular specialist and predict whether the patient will develop coronary heart disease "
    "within the next 10 years. Answer with 1 if the patient will develop coronary heart disease and with 0 if not. "
    "Base your answer on the following patient information. "
)


def typed_config(overrides: list[str]):
    """The shipped config with overrides, validated: the typed config the stages take."""
    from cadft.config.compose import compose
    from cadft.config.validate import validate, with_absolute_paths

    return with_absolute_paths(validate(compose("config", overrides)))


def records(n: int, features: list[str] | None) -> tuple[list[str], np.ndarray]:
    """n records of a synthetic cohort, prepared with the default config (text template; all features or the given
    ones)."""
    from cadft.cli.synth import main as synth
    from cadft.data.prepare import prepare

    work = ROOT / "outputs" / "bench" / "throughput"
    extract = work / "ukb_synthetic.csv"
    if not extract.is_file():
        synth(["--n", "4000", "--seed", "3", "--out", str(extract)])
    overrides = [f"data.path={extract}", f"paths.output_dir={work}", "backbone=tiny"]
    config = typed_config(overrides + ([f"text.features=[{','.join(features)}]"] if features else []))
    table = prepare(config).table().sample(n=n, seed=0)
    return table["text"].to_list(), table["label"].to_numpy()


def matmul_gflops(rows: int, width: int, out: int, repeats: int = 30) -> float:
    a, b = torch.randn(rows, width), torch.randn(width, out)
    torch.matmul(a, b)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    return 2 * rows * width * out * repeats / (time.perf_counter() - started) / 1e9


def batches(lengths: list[int], labels: np.ndarray, batch_size: int, grouped: bool, seed: int) -> list[np.ndarray]:
    from cadft.config.schema import Imbalance
    from cadft.train.imbalance import GroupedSampler, resolve_imbalance

    if grouped:
        imbalance = resolve_imbalance(Imbalance(method="none", class_weights=None, positive_fraction=None), labels)
        order = np.array(list(GroupedSampler(lengths, labels, imbalance, batch_size=batch_size, seed=seed)))
    else:
        order = np.random.default_rng(seed).permutation(len(lengths))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def measure(
    model,
    tokenizer,
    ids: list[list[int]],
    labels: np.ndarray,
    *,
    grouped: bool,
    train_steps: int,
    batch_size: int,
    score_batch: int,
    n_params: int,
) -> dict:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    train = {"examples": 0, "real": 0, "processed": 0, "seconds": 0.0}
    for step, index in enumerate(
        batches([len(x) for x in ids], labels, batch_size, grouped, seed=1)[: train_steps + 1]
    ):
        batch = tokenizer.pad({"input_ids": [ids[i] for i in index]}, return_tensors="pt")
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(
            model(**batch).logits, torch.as_tensor(labels[index], dtype=torch.long)
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step == 0:
            continue  # warm-up step: allocator and kernel selection
        train["seconds"] += time.perf_counter() - started
        train["examples"] += len(index)
        train["real"] += int(batch["attention_mask"].sum())
        train["processed"] += batch["input_ids"].numel()
    model.eval()  # scoring: length-sorted as cadft.eval.score does, or the seed's random order
    order = (
        np.argsort([-len(x) for x in ids], kind="stable") if grouped else np.random.default_rng(2).permutation(len(ids))
    )
    score = {"examples": 0, "real": 0, "processed": 0, "seconds": 0.0}
    with torch.inference_mode():
        for start in range(0, len(order), score_batch):
            index = order[start : start + score_batch]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in index]}, return_tensors="pt")
            started = time.perf_counter()
            model(**batch)
            score["seconds"] += time.perf_counter() - started
            score["examples"] += len(index)
            score["real"] += int(batch["attention_mask"].sum())
            score["processed"] += batch["input_ids"].numel()
    return {
        "tokens_per_participant": float(np.mean([len(x) for x in ids])),
        "train_examples_per_s": train["examples"] / train["seconds"],
        "train_tokens_per_s": train["real"] / train["seconds"],
        "train_padding": 1 - train["real"] / train["processed"],
        "train_gflops": 4 * n_params * train["processed"] / train["seconds"] / 1e9,
        "score_examples_per_s": score["examples"] / score["seconds"],
        "score_tokens_per_s": score["real"] / score["seconds"],
        "score_padding": 1 - score["real"] / score["processed"],
        "score_gflops": 2 * n_params * score["processed"] / score["seconds"] / 1e9,
    }


def bench_backbone(name: str, texts: list[str], labels: np.ndarray, args) -> dict:
    from cadft.config.schema import CLASSIFIER
    from cadft.train.backbone import load_tokenizer, resolve_backbone
    from cadft.train.head import encode
    from cadft.train.model import build_model

    config = typed_config(
        [f"backbone={name}", "model=lora", "model.lora.dropout=0.0", "head=verbalizer", "head.system=''"]
    )
    cache = config.paths.cache_dir
    tokenizer = load_tokenizer(config.backbone, cache)
    torch.manual_seed(0)
    # One model for every side: the head decides the prompt, not the compute (a new classifier head, as before).
    model = build_model(config.model, resolve_backbone(config.backbone, cache), tokenizer, head=CLASSIFIER)
    # embeddings are lookups, not matmuls
    n_params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    hidden = model.config.hidden_size
    result = {"backbone": name, "non_embedding_parameters": n_params}
    for label, prefix, grouped in (("cadft", "", True), ("seed", SEED_PROMPT, False), ("verbalizer", None, True)):
        if prefix is None:  # the scores' head does not change the compute: the same model serves both sides
            ids = encode(texts, tokenizer, config.head, 10**6).input_ids
        else:
            ids = tokenizer([prefix + t for t in texts], add_special_tokens=True)["input_ids"]
        result[label] = measure(
            model,
            tokenizer,
            ids,
            labels,
            grouped=grouped,
            train_steps=args.train_steps,
            batch_size=args.batch_size,
            score_batch=args.score_batch,
            n_params=n_params,
        )
    rows = args.batch_size * int(result["cadft"]["tokens_per_participant"])
    result["matmul_gflops"] = {
        "hidden": matmul_gflops(rows, hidden, hidden),
        "mlp": matmul_gflops(rows, hidden, model.config.intermediate_size),
    }
    reference = max(result["matmul_gflops"].values())
    for label in ("cadft", "seed", "verbalizer"):
        for phase in ("train", "score"):
            result[label][f"{phase}_flops_ratio_to_matmul"] = result[label][f"{phase}_gflops"] / reference
    for phase in ("train", "score"):
        result[f"{phase}_speedup_examples_per_s"] = (
            result["cadft"][f"{phase}_examples_per_s"] / result["seed"][f"{phase}_examples_per_s"]
        )
        result[f"{phase}_verbalizer_cost"] = (
            result["cadft"][f"{phase}_examples_per_s"] / result["verbalizer"][f"{phase}_examples_per_s"]
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["tiny", "smollm2_135m"])
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--train-steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--score-batch", type=int, default=32)
    parser.add_argument("--features", nargs="+", help="text features (data.features names); default: all")
    args = parser.parse_args()
    texts, labels = records(args.records, args.features)
    results = [bench_backbone(name, texts, labels, args) for name in args.backbones]
    for r in results:
        print(f"\n{r['backbone']}  (matmul {max(r['matmul_gflops'].values()):.0f} GFLOP/s)")
        print(
            f"{'':11}{'tok/rec':>8}{'train ex/s':>11}{'train tok/s':>12}{'pad':>7}{'FLOP/mm':>8}"
            f"{'score ex/s':>11}{'score tok/s':>12}{'pad':>7}{'FLOP/mm':>8}"
        )
        for label in ("cadft", "seed", "verbalizer"):
            m = r[label]
            print(
                f"{label:11}{m['tokens_per_participant']:8.0f}{m['train_examples_per_s']:11.2f}"
                f"{m['train_tokens_per_s']:12.0f}{m['train_padding']:7.1%}{m['train_flops_ratio_to_matmul']:8.0%}"
                f"{m['score_examples_per_s']:11.2f}{m['score_tokens_per_s']:12.0f}{m['score_padding']:7.1%}"
                f"{m['score_flops_ratio_to_matmul']:8.0%}"
            )
        print(
            f"speed-up (examples/s): training {r['train_speedup_examples_per_s']:.2f}x, "
            f"scoring {r['score_speedup_examples_per_s']:.2f}x"
        )
        print(
            f"verbalizer time per record vs cadft's classifier input: training {r['train_verbalizer_cost']:.2f}x, "
            f"scoring {r['score_verbalizer_cost']:.2f}x"
        )
    out = ROOT / "outputs" / "bench" / "throughput" / ("result.json" if not args.features else "result_features.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{out}")


if __name__ == "__main__":
    main()
