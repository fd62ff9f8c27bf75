"""Config mistakes through the real entry points (the front door `python -m cadft <command>`, and the `cadft-<command>`
aliases): each stops with exit status 2 and one line on stderr naming the key, the value and what is allowed, no
traceback, nothing written (no output folder, run folder or MLflow store: it stops before data is read or a model is
loaded). Not timed: a timed test fails on a loaded machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CADFT

OUT = "OUT"  # replaced by the test's output dir, which must stay absent

TRAIN_CASES = [
    (
        ["eval.threshold=youdn"],
        "eval.threshold=youdn: expected one of youden, max_f1, sensitivity, fixed (did you mean youden?)",
    ),
    (["model.lora.r=-4"], "model.lora.r=-4: expected an integer >= 1"),
    (["+data.featurs=1"], "data.featurs: unknown key; did you mean data.features?"),
    (["model=lora", "model=full"], "model=lora model=full: the group model is given more than once; choose one option"),
    (["model=qlor"], "model=qlor: no such option of model; allowed: full, lora, qlora (did you mean qlora?)"),
    (["train.batch_size=0"], "train.batch_size=0: expected an integer >= 1"),
    (
        ["imbalance=oversample", "imbalance.positive_fraction=2"],
        "imbalance.positive_fraction=2: expected a number in (0, 1) or null",
    ),
    (["data=ukb"], "data.path=???: a value is required (text); give data.path=..."),
    (
        ["train.batch_size=[1"],
        "train.batch_size=[1: not a valid override (no viable alternative at input '[1'); "
        "see https://hydra.cc/docs/advanced/override_grammar/basic/",
    ),
    (
        ["zero=2", "zero.offload_optimizer=cpu", "model.optim=sgd"],
        "zero.offload_optimizer=cpu runs DeepSpeed's CPU AdamW in place of "
        "model.optim=sgd: use an AdamW optimizer (adamw_torch) or zero.offload_optimizer=none",
    ),
    (
        ["-m", "model=lora,qlor"],
        "model=qlor: no such option of model; allowed: full, lora, qlora (did you mean qlora?)",
    ),
]
CASES = [
    *[("train", [*args, f"paths.output_dir={OUT}"], message) for args, message in TRAIN_CASES],
    (
        "train",
        ["data.path=no_such_extract.csv", f"paths.output_dir={OUT}"],
        "data.path=no_such_extract.csv: no such file",
    ),
    (
        "prepare",
        ["data.format=csv", f"paths.output_dir={OUT}"],
        "data.format=csv: expected one of auto, showcase, tab, rap, parquet, seed_json",
    ),
    (
        "prepare",
        ["task=hard_cad", "task.censor_dates.Wales=soon", f"paths.output_dir={OUT}"],
        "task.censor_dates.Wales=soon: expected an ISO date such as 2022-10-31",
    ),
    *[
        (
            command,
            ["task=hard_cad_prevalent", f"paths.output_dir={OUT}"],
            "data.features cholesterol_medication, bp_medication are treatments (treatment: true), proxies of the "
            "prevalent outcome of task hard_cad_prevalent (people with the disease are treated for it): remove them "
            "(~data.features.cholesterol_medication ~data.features.bp_medication) or set "
            "data.allow_treatment_features=true",
        )
        for command in ("prepare", "train")
    ],
    (
        "prepare",
        ["data.split.by=country", "data.split.test_groups=[Wales,Ireland]", f"paths.output_dir={OUT}"],
        "data.split.test_groups: ['Ireland'] are not countries; allowed: England, Scotland, Wales",
    ),
    (
        "baselines",
        ["baselines.which=[logistic,pcee]", f"paths.output_dir={OUT}"],
        "baselines.which=[logistic, pcee]: expected a list, each one of logistic, lightgbm, logistic_all, "
        "lightgbm_all, pce, pce_recalibrated, age, zero_shot, cox, cox_all, logistic+llm, pce+llm (pcee: did you mean "
        "pce?)",
    ),
    (
        "baselines",
        ["eval.decision_curve=[0.3,0.1,0.01]", f"paths.output_dir={OUT}"],
        "eval.decision_curve=[0.3, 0.1, 0.01]: expected [low, high, step] with 0 < low < high < 1 and step > 0",
    ),
    (
        "eval",
        ["no_such_run", "eval.threshold=youdn", "--out", OUT],
        "eval.threshold=youdn: expected one of youden, max_f1, sensitivity, fixed (did you mean youden?)",
    ),
    (
        "eval",
        ["no_such_run", "eval.thresold=max_f1", "--out", OUT],
        "eval.thresold: unknown key; did you mean eval.threshold?",
    ),
    (
        "eval",
        ["no_such_run", "--out", OUT, "--device"],
        "argument --device: expected one argument (see cadft eval --help)",
    ),
    (
        "explain",
        ["run=no_such_run", "explain.nn=3", f"out={OUT}"],
        "explain.nn: unknown key; did you mean explain.n?",
    ),
    (
        "compare",
        ["not-a-run-id", "--out", OUT],
        "PARENT_RUN_ID=not-a-run-id: not an MLflow run id (32 hexadecimal digits, as the MLflow UI shows)",
    ),
    (
        "compare",
        ["--tracking-uri", f"sqlite:///{OUT}/mlflow.db", "--out", OUT],
        f"--tracking-uri sqlite:///{OUT}/mlflow.db: no MLflow store at {OUT}/mlflow.db (cadft train creates it; pass "
        "the store a run logged to)",
    ),
]


ALIAS_CASES = [  # the same program through its alias script: the error names the alias
    (
        "train",
        ["eval.threshold=youdn", f"paths.output_dir={OUT}"],
        "eval.threshold=youdn: expected one of youden, max_f1, sensitivity, fixed (did you mean youden?)",
    ),
    (
        "prepare",
        ["data.format=csv", f"paths.output_dir={OUT}"],
        "data.format=csv: expected one of auto, showcase, tab, rap, parquet, seed_json",
    ),
    (
        "eval",
        ["no_such_run", "--out", OUT, "--device"],
        "argument --device: expected one argument (see cadft-eval --help)",
    ),
]


def _stops_up_front(tmp_path: Path, command: list[str], args: list[str], prog: str, message: str) -> None:
    out = tmp_path / "outputs"
    args = [arg.replace(OUT, str(out)) for arg in args]
    done = subprocess.run([*command, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [f"{prog}: error: {message.replace(OUT, str(out))}"]
    assert list(tmp_path.iterdir()) == []  # no output dir, no run dir, no MLflow store, nothing in the working dir


@pytest.mark.parametrize(("command", "args", "message"), CASES, ids=[f"{c[0]}:{' '.join(c[1][:3])}" for c in CASES])
def test_a_config_mistake_stops_up_front_with_one_line(tmp_path, command, args, message):
    _stops_up_front(tmp_path, [*CADFT, command], args, f"cadft {command}", message)


@pytest.mark.parametrize(
    ("command", "args", "message"), ALIAS_CASES, ids=[f"cadft-{c[0]}:{' '.join(c[1][:3])}" for c in ALIAS_CASES]
)
def test_an_alias_names_itself_in_the_error(tmp_path, command, args, message):
    script = Path(sys.executable).with_name(f"cadft-{command}")
    if not script.exists():
        pytest.skip(f"the cadft-{command} script is not installed next to this Python")
    _stops_up_front(tmp_path, [str(script)], args, f"cadft-{command}", message)
