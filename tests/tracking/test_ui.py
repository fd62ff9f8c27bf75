"""The MLflow UI in a real browser: `make ui` on a sweep's store, the run table with cadft's columns, two runs
selected and compared. Drives Debian's /usr/bin/chromium through the playwright package (nothing downloaded);
screenshots go to outputs/test-artifacts/test_ui/ (printed)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("CADFT_REQUIRE_BROWSER") == "1"  # .ci/run: a missing browser fails the test
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = REPO / "outputs" / "test-artifacts" / "test_ui"
SERVER_START_S = 90  # the UI answers /health after ~25 s on 2 busy cores
UI_WAIT_MS = 30_000  # the UI polls, so `networkidle` never comes: wait for elements instead


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_ui(out_dir: Path, port: int) -> tuple[subprocess.Popen, str]:
    """`make ui` on out_dir's store; returns the server and the experiment URL it prints, once /health answers."""
    env = os.environ | {"CADFT_OUTPUT_DIR": str(out_dir)}
    server = subprocess.Popen(
        ["make", "-s", "ui", f"UI_PORT={port}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    printed, url = [], None
    for line in server.stdout:  # the URLs come before the server starts
        printed.append(line)
        match = re.search(r"hard_cad_incident10: (http://\S+)", line)
        if match:
            url = match.group(1)
            break
    assert url, "make ui printed no experiment URL:\n" + "".join(printed)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server, url
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the MLflow UI did not answer on port {port} within {SERVER_START_S} s")


def _stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)  # make, the UI command (exec'd into mlflow) and its workers
    server.wait(timeout=30)


@pytest.mark.slow
def test_compare_two_runs_in_the_mlflow_ui(run_sweep, tmp_path):
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} is missing: `make test-deps` installs it as root with apt-get (Debian's chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(reason + "; CADFT_REQUIRE_BROWSER=1 requires it")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    run_sweep(out_dir, "sweep_seeds", "seed=1,2", "eval.plots=true")
    client = MlflowClient(f"sqlite:///{out_dir / 'mlflow.db'}")
    children = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.kind = 'llm'")
    assert sorted(run.info.run_name for run in children) == ["seed=1", "seed=2"]
    assert all(run.info.status == "FINISHED" for run in children)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {ARTIFACTS}")

    server, url = _start_ui(out_dir, _free_port())
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                tempfile.mkdtemp(dir=tmp_path),
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 2560, "height": 1080},
            )  # wide: the grid renders only the columns in view (the tags come after the 10 headline metrics)
            page = browser.new_page()
            page.set_default_timeout(UI_WAIT_MS)
            expect.set_options(timeout=UI_WAIT_MS)
            page.goto(url)
            page.locator("button[data-component-id='mlflow.assistant.chat_panel.close']").click()  # room for the table
            # The sweep's parent run: expand it to show its children, the runs to compare.
            page.locator("button[data-component-id*='runnamecellrenderer']").first.click()
            for run in children:
                expect(page.get_by_role("link", name=run.info.run_name, exact=True)).to_be_visible()
            headers = page.locator("div[role=columnheader]")
            for column in (
                "strategy",
                "imbalance",
                "zero",
                "backbone",
                "cadft.swept.seed",
                "test/auroc",
                "test/auprc",
                "test/brier",
            ):
                expect(headers.filter(has_text=re.compile(f"^{re.escape(column)}$")).first).to_be_attached()
            page.screenshot(path=ARTIFACTS / "runs_table.png")

            for run in children:  # each row has a select and a hide checkbox: the select one is ag-grid's
                page.locator(f"div[role=row][row-id='{run.info.run_id}'] .ag-selection-checkbox input").first.check()
            page.get_by_role("button", name="Compare").click()
            page.wait_for_url(re.compile(r".*#/compare-runs\?runs="))
            expect(page.get_by_text("Comparing 2 Runs")).to_be_visible()
            for run in children:
                expect(page.get_by_text(run.info.run_id, exact=True)).to_be_visible()
                expect(page.get_by_text(run.info.run_name, exact=True).first).to_be_visible()
            page.get_by_text("Visualizations", exact=True).click()  # collapsed: run details, params and metrics in view
            page.get_by_role("switch", name="Parameters - Show diff only").click()  # of ~200 params, the swept seed
            # The metrics table renders only the rows in view, in two grids: names, and values that scroll. Its names
            # grid lags one scroll event behind its values (MLflow 3.17), so each step sets both.
            names, values = page.locator("div[role=grid]").first, page.locator("div[role=grid]").nth(1)
            auroc = page.get_by_role("link", name="test/auroc", exact=True)

            def scroll_both(top: int) -> None:
                for grid in (values, names):
                    grid.evaluate("(grid, top) => { grid.scrollTop = top; }", top)

            for top in range(0, 20_000, 200):  # rendered ahead of view: then scroll its row to the middle
                if auroc.count():
                    scroll_both(int(auroc.evaluate("link => parseFloat(link.parentElement.style.top)")) - 100)
                    break
                scroll_both(top)
            values.scroll_into_view_if_needed()  # the page: scrolling to the link would move the names grid alone
            expect(auroc).to_be_in_viewport()
            assert names.evaluate("grid => grid.scrollTop") == values.evaluate("grid => grid.scrollTop")
            row_top = auroc.evaluate("link => link.parentElement.style.top")
            shown = values.evaluate(
                "(grid, top) => [...grid.querySelectorAll('div[style]')]"
                ".filter(cell => cell.style.top === top).map(cell => cell.innerText)",
                row_top,
            )
            in_view = sorted(
                children, key=lambda run: page.get_by_text(run.info.run_id, exact=True).bounding_box()["x"]
            )
            assert [float(value) for value in shown] == pytest.approx(
                [run.data.metrics["test/auroc"] for run in in_view], abs=5e-4
            ), (shown, row_top)
            page.screenshot(path=ARTIFACTS / "compare_view.png")
            browser.close()
    finally:
        _stop(server)
