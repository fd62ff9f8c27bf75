"""DeepSpeed ZeRO-2/3 and multi-process training on CPU: the zero config and its checks, and real 2-process runs.

The multi-process tests launch the real command (`torchrun --nproc_per_node 2 tests/probed_cli.py zero=...`, once
through the deepspeed launcher: `cadft train` with test probes) on the tiny backbone with OMP_NUM_THREADS=1, and load
tests/rank_probe.py through CADFT_TEST_CALLBACKS. Each checks that the run finishes in one run dir with one MLflow
run, that the ranks trained on different examples, that every logged loss equals a single-process run on the same
global batch (twice the per-rank batch), and that the saved model reloads to the in-memory model's logits.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cadft.config import schema
from cadft.config.compose import quote_stage_choices
from cadft.errors import CadftError
from cadft.train.distributed import accept_local_rank_flag, prepare_launch
from cadft.train.imbalance import GroupedSampler, resolve_imbalance
from cadft.train.model import load_model
from cadft.train.run import run_training
from cadft.train.trainer import build_training_arguments
from cadft.train.zero import deepspeed_config, keep_4bit_layout, one_trainable_dtype
from tests.conftest import CADFT, REPO
from tests.train.test_model import build

PROBED_CLI = REPO / "tests" / "probed_cli.py"  # `cadft train` with the TrainerCallbacks in CADFT_TEST_CALLBACKS
BIN = Path(sys.executable).parent
BATCH_PER_RANK = 4
RANKS = 2
STEPS = 2  # with no warmup: the first loss checks the initial model, the second one optimizer step


def test_deepspeed_config_leaves_shared_settings_to_the_trainer(make_config):
    none = make_config("zero=none")
    assert deepspeed_config(none.zero, none.model, "cpu") is None
    two_cfg = make_config("zero='2'")
    two = deepspeed_config(two_cfg.zero, two_cfg.model, "cpu")
    for key in (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        assert two[key] == "auto"
    assert two["bf16"] == {"enabled": "auto"} and two["fp16"] == {"enabled": "auto"} and "optimizer" not in two
    assert two["zero_optimization"] == {
        "stage": 2,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
        "offload_optimizer": {"device": "none"},
    }
    three_cfg = make_config("zero='3'", "zero.offload_optimizer=cpu", "zero.offload_param=cpu")
    three = deepspeed_config(three_cfg.zero, three_cfg.model, "cpu")
    assert three["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert three["zero_optimization"]["offload_param"] == {"device": "cpu", "pin_memory": False}
    assert three["optimizer"]["type"] == "AdamW" and set(three["optimizer"]["params"].values()) == {"auto"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["zero='2'", "+zero.offload_param=cpu"], "zero.offload_param: only for zero.stage=3, not zero.stage=2"),
        (
            ["zero='3'", "model=qlora", "model.quantization.quant_storage=bf16"],
            "needs model.quantization.quant_storage=auto",
        ),
        (["zero='2'", "model.dtype=fp16"], "model.dtype is float16 on cpu; with zero it must be fp32"),
        (["zero='2'", "model=qlora", "model.quantization.compute_dtype=bf16"], "compute_dtype is bfloat16 on cpu"),
        (
            ["zero='2'", "zero.offload_optimizer=cpu", "model.optim=sgd"],
            "runs DeepSpeed's CPU AdamW in place of model.optim=sgd",
        ),
    ],
)
def test_combinations_that_cannot_work_fail_before_training(train_config, tmp_path, overrides, message):
    with pytest.raises(CadftError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_training(train_config(*overrides), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_accepts_a_bare_stage_and_says_what_is_wrong(tmp_path):
    done = subprocess.run(
        [
            *CADFT,
            "train",
            "backbone=tiny",
            "zero=2",
            "+zero.offload_param=cpu",
            f"paths.output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "cadft train: error: zero.offload_param: only for zero.stage=3, not zero.stage=2"
    ]


def test_a_run_without_zero_ignores_deepspeed_left_on_by_an_earlier_job(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what accelerate leaves behind after a zero=2|3 sweep job
    assert build_training_arguments(make_config("zero=none"), tmp_path, "cpu").deepspeed_plugin is None


def test_stage_choices_are_quoted_for_hydra():
    argv = ["zero=2", "model=lora", "zero.offload_optimizer=cpu"]  # the arguments, without the program
    quote_stage_choices(argv)
    assert argv == ["zero='2'", "model=lora", "zero.offload_optimizer=cpu"]
    sweep = ["-m", "zero=none,2,3"]
    quote_stage_choices(sweep)
    assert sweep[-1] == "zero=none,'2','3'"


@pytest.mark.parametrize("flag", [["--local_rank=1"], ["--local-rank", "1"]])
def test_launcher_local_rank_flag_becomes_an_environment_variable(monkeypatch, flag):
    monkeypatch.delenv("WORLD_SIZE", raising=False)  # one process: nothing else happens
    monkeypatch.setenv(
        "LOCAL_RANK", "0"
    )  # restored after the test (a stray LOCAL_RANK would make later runs distributed)
    argv = [*flag, "model=lora"]  # the arguments, without the program
    accept_local_rank_flag(argv)  # what `cadft train` does first, then prepare_launch (nothing more for one process)
    prepare_launch(argv)
    assert argv == ["model=lora"] and os.environ["LOCAL_RANK"] == "1"


def test_oversampled_steps_hold_no_participant_twice_across_ranks():
    """A few cases drawn many times (3 of 64 at positive_fraction 0.25): accelerate's sharding of the sampler gives
    each rank different participants in every step, including the last ones."""
    from accelerate.data_loader import BatchSamplerShard

    labels = np.zeros(64, dtype=np.int64)
    labels[[14, 42, 61]] = 1
    lengths = np.random.default_rng(0).integers(60, 90, 64).tolist()
    applied = resolve_imbalance(
        schema.Imbalance(method="oversample", class_weights=None, positive_fraction=0.25), labels
    )
    for seed in range(20):
        sampler = GroupedSampler(lengths, labels, applied, batch_size=BATCH_PER_RANK, world_size=RANKS, seed=seed)
        batches = torch.utils.data.BatchSampler(sampler, BATCH_PER_RANK, drop_last=False)
        shards = [list(BatchSamplerShard(batches, num_processes=RANKS, process_index=r)) for r in range(RANKS)]
        drawn = []
        for step in zip(*shards):
            members = [i for batch in step for i in batch]
            assert len(set(members)) == len(members) == BATCH_PER_RANK * RANKS, (seed, step)
            drawn += members
        assert labels[drawn].sum() == 16


# --- two processes -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def deepspeed_extensions(cache_dir) -> Path:
    """DeepSpeed compiles its CPU communication op on first use (~25 s): once per session, in the session cache
    (or where TORCH_EXTENSIONS_DIR already points, e.g. a CI cache)."""
    folder = Path(
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir / "torch_extensions"))
    )  # ranks inherit it
    build = subprocess.run(
        [sys.executable, "-c", "from deepspeed.comm.torch import build_shm_op; assert build_shm_op()"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return folder


@pytest.fixture(scope="session")
def reference_runs() -> dict:
    """Single-process results, kept per (strategy, imbalance) for the whole session."""
    return {}


def _shared_overrides(synthetic_cohort, prepared_dir, strategy: str, imbalance: str, head: str) -> list[str]:
    extract, oracle = synthetic_cohort
    return [
        f"model={strategy}",
        f"imbalance={imbalance}",
        f"head={head}",
        f"data.path={extract}",
        f"data.oracle_path={oracle}",
        f"paths.prepared_dir={prepared_dir}",
        "text.features=[age,sex,systolic_bp,cholesterol,hdl,smoking,diabetes,bp_medication]",
        f"train.max_steps={STEPS}",
        f"train.eval_steps={STEPS}",
        f"train.save_steps={STEPS}",
        "train.logging_steps=1",
        "train.warmup_ratio=0.0",
        "train.max_train_examples=64",
        "train.max_eval_examples=64",
        "train.max_length=128",
        "eval.bootstrap=50",
        "eval.plots=false",
        *(
            ["model.lora.dropout=0.0"] if strategy != "full" else []
        ),  # dropout masks differ between a rank and one process
    ]


def _launch(launcher: str, overrides: list[str], output_dir: Path, probe_dir: Path) -> subprocess.CompletedProcess:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if launcher == "torchrun":
        command = [
            str(BIN / "torchrun"),
            "--nproc_per_node",
            str(RANKS),
            "--master_port",
            str(port),
            str(PROBED_CLI),
        ]
    else:
        command = [
            str(BIN / "deepspeed"),
            "--num_gpus",
            str(RANKS),
            "--master_port",
            str(port),
            str(PROBED_CLI),
        ]
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "CADFT_TEST_CALLBACKS": "tests.rank_probe:RankProbe",
        "CADFT_PROBE_DIR": str(probe_dir),
    }
    return subprocess.run(
        [*command, *overrides, "backbone=tiny", f"paths.output_dir={output_dir}", f"train.batch_size={BATCH_PER_RANK}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=900,
    )


def _logged(db: Path, key: str) -> list[float]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("select step, value from metrics where key = ? order by step", (key,)).fetchall()
    return [value for _, value in rows]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "stage", "imbalance", "launcher", "head"),
    [
        ("lora", "2", "weighted", "torchrun", "classifier"),
        # The verbalizer's head starts from the language-model rows, set while ZeRO-3 holds the weight partitioned:
        # equal losses to one process prove every rank started from the same rows.
        ("lora", "3", "weighted", "deepspeed", "verbalizer"),
        ("full", "2", "oversample", "torchrun", "classifier"),
        ("full", "3", "oversample", "torchrun", "classifier"),
        ("qlora", "2", "weighted", "torchrun", "classifier"),
        ("qlora", "3", "weighted", "torchrun", "verbalizer"),
    ],
)
def test_two_processes(
    deepspeed_extensions,
    reference_runs,
    make_config,
    synthetic_cohort,
    prepared_dir,
    tmp_path,
    strategy,
    stage,
    imbalance,
    launcher,
    head,
):
    shared = _shared_overrides(synthetic_cohort, prepared_dir, strategy, imbalance, head)
    if (
        launcher == "deepspeed"
    ):  # a fresh cache: the ranks build the backbone (seeded, so the same weights) before ZeRO-3 starts
        shared.append(f"paths.cache_dir={tmp_path / 'cache'}")
    done = _launch(launcher, [*shared, f"zero={stage}"], tmp_path / "multi", tmp_path / "probe")
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]

    # One run dir for both ranks, and one MLflow run in the store.
    (run_dir,) = (tmp_path / "multi" / "runs").glob("*/*")
    db = tmp_path / "multi" / "mlflow.db"
    with sqlite3.connect(db) as connection:
        assert connection.execute("select status from runs").fetchall() == [("FINISHED",)]

    # The ranks trained on different examples: no index shared within a step, every step a full global batch.
    ranks = [json.loads((tmp_path / "probe" / f"rank{r}.json").read_text()) for r in range(RANKS)]
    assert [rank["world_size"] for rank in ranks] == [RANKS, RANKS]
    steps = list(zip(*(rank["batches"] for rank in ranks)))
    assert len(steps) == 64 // (BATCH_PER_RANK * RANKS)
    for batches in steps:
        drawn = [i for batch in batches for i in batch]
        assert len(set(drawn)) == len(drawn) == BATCH_PER_RANK * RANKS
    if imbalance == "oversample":
        labels = ranks[0]["labels"]
        drawn = [i for batches in steps for batch in batches for i in batch]
        assert sum(labels[i] for i in drawn) == round(0.25 * len(labels))  # imbalance.positive_fraction
        assert sum(labels) < round(0.25 * len(labels))  # the natural fraction is lower: cases were drawn again

    # The same losses as one process on the same global batch.
    key = (strategy, imbalance, head)
    if key not in reference_runs:
        cfg = make_config(*shared, f"train.batch_size={BATCH_PER_RANK * RANKS}")
        run_training(cfg, tmp_path / "reference")
        db_single = Path(cfg.paths.output_dir) / "mlflow.db"
        reference_runs[key] = {k: _logged(db_single, k) for k in ("train/loss_weighted", "train/loss_unweighted")}
    for metric, expected in reference_runs[key].items():
        assert len(expected) == STEPS
        assert _logged(db, metric) == pytest.approx(expected, rel=1e-4), metric

    # The saved model (gathered from all ranks under ZeRO-3) reloads to the in-memory model's logits.
    probe = json.loads((tmp_path / "probe" / "logits.json").read_text())
    model = load_model(run_dir / "model")
    if stage == "3":
        keep_4bit_layout(model)  # the kernel the ranks used (bitsandbytes' CPU inference repack is off under ZeRO-3)
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor(probe["input_ids"]), attention_mask=torch.tensor(probe["attention_mask"])
        ).logits
    # bitsandbytes' CPU inference repack is lossy when undone in place for a checkpoint (as without ZeRO): the
    # in-memory 4-bit base then drifts by ~2e-4 from a fresh load. ZeRO-3 keeps the layout, so it matches exactly.
    atol = 2e-3 if (strategy, stage) == ("qlora", "2") else 1e-5
    torch.testing.assert_close(logits.float(), torch.tensor(probe["logits"]), rtol=0, atol=atol)


def test_zero3_gets_one_dtype_for_every_trainable_weight(tiny):
    """LoRA over a bf16 backbone: peft keeps the adapters in fp32 beside a bf16 score head, which ZeRO-3 cannot
    flatten (seen on an H200: AssertionError in deepspeed's defragment). After the fix all are bf16, values kept
    to bf16 precision, and the frozen backbone is untouched."""
    model = build("lora", tiny, ["dtype=bf16"])
    trainable = {name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name: p.dtype for name, p in model.named_parameters() if not p.requires_grad}
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32, torch.bfloat16}

    one_trainable_dtype(model)

    after = dict(model.named_parameters())
    assert {after[name].dtype for name in trainable} == {torch.bfloat16}
    assert {name: after[name].dtype for name in frozen} == frozen
    for name, before in trainable.items():
        torch.testing.assert_close(after[name].float(), before.to(torch.bfloat16).float())
