"""cadft-baselines: logistic regression, LightGBM and the Pooled Cohort Equations (plus the oracle on
synthetic cohorts) on the same prepared split as the language models, logged to the same MLflow experiment.

    cadft-baselines [data=synthetic|ukb data.path=FILE] [task=...] [text=...] [eval.KEY=VALUE ...]
                    [+baselines.which=[logistic,pce]]

Shares the Hydra config with cadft-train, so `data`/`task` overrides select the same prepared table (from the
cache). Each baseline is fitted on train only, its threshold chosen on validation, and it is scored on test;
its metrics.json/predictions.jsonl/plots go to <run dir>/<name>/ and to an MLflow run tagged kind=baseline
(kind=oracle for the synthetic cohort's true risk).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cadft import tracking
from cadft.cli import CONF_DIR, absolute_paths, check_command_line, exit_on_user_error, quote_stage_choices
from cadft.config import validate


def run(cfg: DictConfig, run_dir: Path) -> dict[str, dict]:
    from cadft.baselines import BASELINES, run_baselines
    from cadft.eval.metrics import flatten_metrics
    from cadft.eval.run import artifact_files, oracle_path_for
    from cadft.prepare import prepare

    validate(cfg)
    run_dir = run_dir.resolve()
    absolute_paths(cfg)
    tracking.check_writable(run_dir, "run dir (hydra.run.dir)")
    tracking.preflight(cfg)
    prepared = prepare(cfg)
    which = tuple(cfg.get("baselines", {}).get("which") or BASELINES)
    results = run_baselines(prepared.table(), prepared.card["features"], cfg.eval, run_dir, seed=int(cfg.seed),
                            oracle_path=oracle_path_for(cfg), which=which)
    for name, metrics in results.items():
        kind = "oracle" if name == "oracle" else "baseline"
        tags = {"kind": kind, "baseline": name, "strategy": name, "task": cfg.task.name, "data_hash": prepared.key[:12],
                "git_commit": tracking.git_commit(), "cadft.run_dir": str(run_dir / name)}
        tracking.start_run(cfg, run_dir / name, tags, run_name=f"{kind}-{name}")
        try:
            tracking.log_params({"baseline": name, "task.name": cfg.task.name, "data.path": cfg.data.path, "seed": cfg.seed})
            tracking.log_metrics(flatten_metrics(metrics))
            tracking.log_artifacts(artifact_files(run_dir / name, include_eids=tracking.may_log_eids(cfg)), artifact_path="eval")
        finally:
            tracking.end_run()
    return results


def summary_lines(results: dict[str, dict]) -> list[str]:
    lines = [f"{'model':<10} {'AUROC':>22} {'AUPRC':>7} {'Brier':>7}"]
    for name, metrics in results.items():
        test = metrics["test"]
        ci = (test.get("ci") or {}).get("auroc")
        auroc = f"{test['auroc']:.3f}" + (f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else "")
        lines.append(f"{name:<10} {auroc:>22} {test['auprc']:>7.3f} {test['brier']:>7.4f}")
    return lines


def main() -> None:
    quote_stage_choices(sys.argv)
    check_command_line("cadft-baselines", "baselines_cli", sys.argv[1:])
    _hydra_main()


@hydra.main(config_path=CONF_DIR, config_name="baselines_cli", version_base="1.3")
@exit_on_user_error("cadft-baselines")
def _hydra_main(cfg: DictConfig) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    results = run(cfg, run_dir)
    print("\n".join(summary_lines(results)))
    print(f"reports: {run_dir.resolve()}/<model>/metrics.json")


if __name__ == "__main__":
    main()
