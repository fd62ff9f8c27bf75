"""A run folder is checked before it is applied (cadft.predict.check): a tampered or mismatched folder is refused by
cadft predict and cadft eval with one line and exit status 2, before the model loads; the run's own folder passes.
Each case changes this test's copy of the session's tiny run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cadft.cli.eval import main as eval_main
from cadft.cli.predict import main as predict_main
from cadft.config import CONF_DIR
from cadft.errors import CadftError
from cadft.predict.trained_run import TrainedRun
from cadft.train.provenance import FILES, TRAINED_ON, read_info


def _refused(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def _edit_config(run: Path, edit) -> None:
    saved = OmegaConf.load(run / "config.yaml")
    edit(saved)
    OmegaConf.save(saved, run / "config.yaml")


def _nan_calibrator(run: Path) -> None:
    path = run / "model" / "calibrator.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps(saved | {"params": saved["params"] | {"intercept": float("nan")}}))


CASES = {  # what was done to the run folder -> what the one line says
    "calibrator with a NaN parameter": (_nan_calibrator, "model/calibrator.json is not the file the run saved"),
    "another task in config.yaml": (
        lambda run: _edit_config(run, lambda c: OmegaConf.update(c, "task.name", "mi_incident10")),
        'config.yaml does not match the model: task.name is "mi_incident10" there but the model was trained with '
        '"hard_cad_incident10"',
    ),
    "a feature removed from config.yaml": (
        lambda run: _edit_config(run, lambda c: c.data.features.pop("bmi")),
        "config.yaml does not match the model: data.features.bmi",
    ),
    "the head swapped in config.yaml": (
        lambda run: _edit_config(
            run, lambda c: setattr(c, "head", OmegaConf.load(CONF_DIR / "head" / "verbalizer.yaml"))
        ),
        "config.yaml does not match the model: head.",
    ),
    "adapter deleted": (
        lambda run: (run / "model" / "adapter_model.safetensors").unlink(),
        "model/adapter_model.safetensors is missing (the run saved it with the model)",
    ),
    "adapter replaced": (
        lambda run: (run / "model" / "adapter_model.safetensors").write_bytes(b"\0" * 64),
        "model/adapter_model.safetensors is not the file the run saved",
    ),
    "every weight deleted, record too": (
        lambda run: [
            (run / "model" / "adapter_model.safetensors").unlink(),
            (run / "model" / "cadft_model.json").write_text(
                json.dumps({k: v for k, v in read_info(run / "model").items() if k != FILES})
            ),
        ],
        "model/ has no adapter or model weights",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_tampered_run_is_refused_by_predict_and_eval(case, tiny_run, synthetic_cohort, tmp_path, capsys):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("evaluations")))
    tamper, message = CASES[case]
    tamper(run)
    out = tmp_path / "risks.csv"
    said = _refused(predict_main, [f"run={run}", f"data.path={synthetic_cohort[0]}", f"out={out}"], capsys)
    assert said.startswith("cadft predict: error: ") and message in said, said
    said = _refused(eval_main, [str(run), "--out", str(tmp_path / "eval")], capsys)
    assert said.startswith("cadft eval: error: ") and message.replace("config.yaml does", "") in said, said
    assert not out.exists() and not (tmp_path / "eval").exists()


def test_the_runs_own_folder_passes_and_a_finite_calibrator_is_required(tiny_run, tmp_path, capsys):
    info = read_info(tiny_run / "model")
    assert info[TRAINED_ON]["task"]["name"] == "hard_cad_incident10" and info[TRAINED_ON]["head"] == {
        "name": "classifier"
    }
    assert {"adapter_model.safetensors", "calibrator.json", "training_sample.json", "tokenizer.json"} <= set(
        info[FILES]
    )
    assert TrainedRun(tiny_run).recalibrator.method == "platt"
    run = Path(shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("evaluations")))
    _nan_calibrator(run)
    from cadft.eval.recalibration import Recalibrator

    with pytest.raises(Exception, match=r"calibrator parameter intercept=NaN is not a finite number"):
        Recalibrator.load(run / "model" / "calibrator.json")  # even a calibrator recorded as the run's


def test_eval_refuses_an_override_of_what_the_model_was_trained_on(tiny_run, tmp_path, capsys):
    said = _refused(eval_main, [str(tiny_run), "task.name=mi_incident10", "--out", str(tmp_path / "eval")], capsys)
    assert 'the run\'s config.yaml with the overrides does not match the model: task.name is "mi_incident10"' in said
    assert not (tmp_path / "eval").exists()


def test_a_key_the_record_lacks_is_checked_at_its_default(tiny_run, tmp_path):
    """A model saved before a key existed (train.shuffle_feature_order, text.categories) was trained with its default:
    it passes with the default and is refused with another value."""
    run = Path(shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("evaluations")))
    info = read_info(run / "model")
    assert info[TRAINED_ON]["train"] == {"shuffle_feature_order": False}
    del info[TRAINED_ON]["train"], info[TRAINED_ON]["text"]["categories"]
    (run / "model" / "cadft_model.json").write_text(json.dumps(info))
    assert TrainedRun(run).recalibrator.method == "platt"
    _edit_config(run, lambda c: OmegaConf.update(c, "train.shuffle_feature_order", True))
    with pytest.raises(CadftError, match=r"shuffle_feature_order is true there but the model was trained with false"):
        TrainedRun(run)
