"""Scoring with and without the shared prompt prefix computed once (eval.prefix_reuse), SmolLM2-135M in fp32 on CPU.

    python bench/prefix_scoring.py [--records 64] [--rounds 2] [--batch-size 32] [--backbone smollm2_135m]
                                   [--text text compact] [--out outputs/bench/prefix_scoring/results.json]
    (a dry run: --backbone tiny --records 16)

Records: validation records of a 2,000-participant synthetic cohort written as the demo writes them (its 9 features,
head=verbalizer with an empty system turn), with the question after the record (the default) and before it
(head.question_first=true, which makes the shared prefix longer). The model is the untrained verbalizer in fp32 (the
zero-shot baseline; a trained run's merged LoRA model costs the same per token). For each layout, whole passes of
cadft.eval.score.score_texts over the same records alternate plain and prefix reuse, `--rounds` times each, so
machine load hits both alike; records/s is records over the median pass time. Also the largest probability
difference between the two (the tests hold it within 1e-5) and the shared prefix's share of the tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "outputs" / "bench" / "prefix_scoring"


def records(backbone: str, text: str, n: int) -> tuple:
    """(typed config, the first n validation records) of the bench cohort, written with the demo's settings."""
    import polars as pl

    from cadft.cli.synth import main as synth
    from cadft.config.compose import compose
    from cadft.config.validate import validate, with_absolute_paths
    from cadft.data.prepare import prepare

    extract = WORK / "ukb_synthetic.csv"
    if not extract.is_file():
        synth(["--n", "2000", "--seed", "0", "--out", str(extract)])
    overrides = [f"data.path={extract}", f"paths.output_dir={WORK}", "+experiment=demo", f"backbone={backbone}"]
    config = with_absolute_paths(validate(compose("config", [*overrides, f"text={text}", "tracking.enabled=false"])))
    table = prepare(config).table()
    return config, table.filter(pl.col("split") == "validation").head(n)["text"].to_list()


def passes(model, tokenizer, texts: list[str], head, batch_size: int, rounds: int) -> dict:
    from cadft.eval.prefix_cache import shared_prefix
    from cadft.eval.score import score_texts
    from cadft.train.head import encode

    encoded = encode(texts, tokenizer, head, 10**6).input_ids
    shared = shared_prefix(encoded, tokenizer.pad_token_id)
    seconds, probs = {False: [], True: []}, {}
    for round_ in range(rounds):
        for reuse in (False, True) if round_ % 2 == 0 else (True, False):
            started = time.perf_counter()
            probs[reuse] = score_texts(
                model, tokenizer, texts, head=head, batch_size=batch_size, max_length=10**6, device="cpu",
                desc="bench", prefix_reuse=reuse,
            )  # fmt: skip
            seconds[reuse].append(time.perf_counter() - started)
    plain, reused = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {
        "records": len(texts),
        "tokens_per_record": round(float(np.mean([len(ids) for ids in encoded])), 1),
        "shared_prefix_tokens": shared,
        "records_per_second_plain": round(len(texts) / plain, 2),
        "records_per_second_prefix": round(len(texts) / reused, 2),
        "speed_up": round(plain / reused, 3),
        "max_probability_difference": float(np.abs(probs[True] - probs[False]).max()),
        "pass_seconds": {"plain": seconds[False], "prefix": seconds[True]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="smollm2_135m")
    parser.add_argument("--text", nargs="+", default=["text"])
    parser.add_argument("--out", type=Path, default=WORK / "results.json")
    args = parser.parse_args()
    from cadft.train.backbone import load_tokenizer, resolve_backbone
    from cadft.train.model import zero_shot_model

    torch.set_num_threads(torch.get_num_threads())
    results = []
    for text in args.text:
        config, texts = records(args.backbone, text, args.records)
        tokenizer = load_tokenizer(config.backbone, config.paths.cache_dir)
        folder = resolve_backbone(config.backbone, config.paths.cache_dir)
        model = zero_shot_model(folder, tokenizer, config.head, device="cpu", dtype="fp32", trust_remote_code=False)
        for question_first in (False, True):
            head = replace(config.head, question_first=question_first)
            result = passes(model, tokenizer, texts, head, args.batch_size, args.rounds)
            results.append({"backbone": args.backbone, "text": text, "question_first": question_first} | result)
            print(json.dumps(results[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
