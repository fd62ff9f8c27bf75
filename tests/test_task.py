"""Hard-CAD, broad-CHD and prevalent labels on hand-checked edge cases (tests/edge_cases.py)."""

from __future__ import annotations

import pytest

from cadft.task import Definition, TaskConfigError, label
from cadft.ukb.read import read_extract
from tests.edge_cases import EDGE_CASES, people
from tests.extracts import write_showcase


@pytest.fixture
def extract(tmp_path):
    path = write_showcase(tmp_path / "edge.csv", people())
    fields = {f for task in ("hard_cad", "broad_chd", "hard_cad_prevalent") for f in _definition(task).required_fields()}
    return read_extract(path, sorted(fields), optional_ids=(191,))


def _definition(task: str) -> Definition:
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return Definition.from_config(compose("config", overrides=[f"task={task}"]).task)


@pytest.mark.parametrize(("task", "column"), [("hard_cad", 1), ("hard_cad_prevalent", 2), ("broad_chd", 3)])
def test_edge_cases(extract, task, column):
    labels = {row["eid"]: row for row in label(extract, _definition(task)).iter_rows(named=True)}
    for name, case in EDGE_CASES.items():
        row, expected = labels[case[0]["eid"]], case[column]
        got = row["exclusion"] if isinstance(expected, str) else row["label"]
        assert got == expected, f"{task}: {name}: expected {expected}, got {got} ({row})"
        assert row["included"] == (not isinstance(expected, str)), name


def test_incident_event_date_and_source(extract):
    rows = {r["eid"]: r for r in label(extract, _definition("hard_cad")).iter_rows(named=True)}
    later_slot = rows[EDGE_CASES["mi_in_later_slot"][0]["eid"]]
    assert str(later_slot["event_date"]) == "2016-09-09" and later_slot["event_source"] == "icd10"
    death = rows[EDGE_CASES["death_first_event"][0]["eid"]]
    assert str(death["event_date"]) == "2011-11-11" and death["event_source"] == "death"
    lost = rows[EDGE_CASES["lost_before_event"][0]["eid"]]
    assert str(lost["followup_end"]) == "2010-02-02"


def test_undated_policies(extract, make_config):
    undated = EDGE_CASES["undated_code"][0]["eid"]
    for policy, expected in (("prevalent", "prevalent"), ("ignore", None)):
        task = make_config("task=hard_cad", f"task.undated_events={policy}").task
        row = label(extract, Definition.from_config(task)).filter(eid=undated).row(0, named=True)
        assert row["exclusion"] == expected and row["label"] == 0


def test_horizon_is_config(extract, make_config):
    after_horizon = EDGE_CASES["mi_after_horizon"][0]["eid"]
    task = make_config("task.horizon_years=12").task
    assert label(extract, Definition.from_config(task)).filter(eid=after_horizon)["label"].item() == 1


def test_mi_definition_drops_revascularisation(extract):
    rows = {r["eid"]: r for r in label(extract, _definition("mi")).iter_rows(named=True)}
    assert rows[EDGE_CASES["cabg_after_baseline"][0]["eid"]]["label"] == 0
    assert rows[EDGE_CASES["self_report_ptca"][0]["eid"]]["exclusion"] is None
    assert rows[EDGE_CASES["death_first_event"][0]["eid"]]["label"] == 1


def test_new_phenotype_in_yaml_alone(extract, make_config):
    """A user-defined outcome: any hypertension code (I10) after baseline."""
    task = make_config(
        "task.name=hypertension", "task.definition.icd10=[I10]", "task.definition.icd9=[]", "task.definition.opcs4=[]",
        "task.definition.self_report={}", "task.deaths_count=false",
    ).task
    rows = {r["eid"]: r for r in label(extract, Definition.from_config(task)).iter_rows(named=True)}
    assert rows[EDGE_CASES["noise_only"][0]["eid"]]["label"] == 1  # I10 in 2009, after the 2008 baseline
    assert rows[EDGE_CASES["old_mi_before_baseline"][0]["eid"]]["exclusion"] == "prevalent"  # I10 in 2001
    assert rows[EDGE_CASES["angina_only"][0]["eid"]]["label"] == 0


def test_a_task_without_codes_is_refused(make_config):
    """The keys' types and choices are checked with the config (tests/test_config.py); the codes here."""
    task = make_config().task
    task.definition = {"icd10": [], "icd9": [], "opcs4": [], "self_report": {6150: []}}
    with pytest.raises(TaskConfigError, match="task.definition lists no codes"):
        Definition.from_config(task)
