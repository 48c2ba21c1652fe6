"""Notebook 07 as a reader uses it: JupyterLab on 127.0.0.1, driven by headless Chromium from
Debian (chromium, chromium-driver) through selenium. It opens the notebook (which must not be
marked modified by opening it), runs every cell, changes class A and then the model in the
explorer's widgets, and checks that the report text and the figure changed each time.
Screenshots of each step go to browser/screenshots/ (git-ignored).

JupyterLab serves a copy of the notebook from a scratch folder with autosave off, so nothing
it does can write over the committed notebook. Run with ``make browser`` (after nbval, whose
smoke run fills the caches 07 reads); it needs ``make setup`` (the apt step installs Chromium).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "browser" / "screenshots"
NOTEBOOK = "07_explore_pairs.ipynb"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# JupyterLab settings for the test: no autosave (the copy stays as it was), no news prompt
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float, every: float = 0.5):
    """``check()``'s first truthy value within ``timeout`` seconds, else a failure naming
    ``what``."""
    end = time.time() + timeout
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a copy of notebook 07: (url, token)."""
    for path in (CHROMIUM, DRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: run make setup (the apt step installs chromium "
                        f"and chromium-driver)")
    top = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, top / NOTEBOOK)
    for name, value in SETTINGS.items():
        path = top / ".settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    log = open(top / "lab.log", "w")
    # --allow-root: the project's machines run as root, where JupyterLab refuses to start
    # without it; its own session, so the server and its kernels end together
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={top}",
         f"--LabApp.user_settings_dir={top / '.settings'}",
         f"--LabApp.workspaces_dir={top / '.workspaces'}"],
        cwd=top, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited: {(top / 'lab.log').read_text()[-2000:]}")
            return False
    try:
        _wait("JupyterLab to start", up, 90)
        yield url, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1400", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _explorer_state(driver):
    """(report text, figure src) of the explorer's views: the output under its controls."""
    return driver.execute_script("""
        const pre = [...document.querySelectorAll('.jp-OutputArea-output pre')]
            .find(p => p.textContent.includes('accuracy pruned/unpruned'));
        if (!pre) return null;
        const cell = pre.closest('.jp-Cell');
        const img = cell && cell.querySelector('.jp-RenderedImage img');
        return img ? [pre.textContent, img.getAttribute('src')] : null;""")


def _dropdown(driver, label: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    xpath = (f"//div[contains(@class,'widget-dropdown')][.//label[normalize-space()='{label}']]"
             f"//select")
    return Select(driver.find_element(By.XPATH, xpath))


def _menu(driver, *path: str) -> None:
    from selenium.webdriver.common.by import By
    top, *items = path
    driver.find_element(By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and "
                                  f"normalize-space()='{top}']").click()
    for item in items:
        _wait(f"the menu item {item!r}", lambda: driver.find_elements(
            By.XPATH, f"//div[contains(@class,'lm-Menu-itemLabel') and "
                      f"normalize-space()='{item}']"), 10)[0].click()


def test_explorer_widgets_redraw_report_and_figure(lab, browser):
    from selenium.webdriver.common.by import By
    url, token = lab
    t0 = time.time()
    browser.get(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
    _wait("the notebook to open", lambda: browser.find_elements(By.CSS_SELECTOR,
                                                                  ".jp-NotebookPanel .jp-Cell"), 60)
    _wait("the kernel to be idle", lambda: browser.find_elements(
        By.CSS_SELECTOR, ".jp-NotebookPanel-toolbar [data-status='idle']"), 60)
    time.sleep(2)  # the kernel's metadata reaches the notebook model after it is idle
    _shot(browser, "1_opened")
    dirty = browser.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tab.jp-mod-dirty")
    assert not dirty, "opening the notebook marked it modified (its kernelspec metadata differs)"

    _menu(browser, "Run", "Run All Cells")
    _wait("the explorer's controls", lambda: browser.find_elements(
        By.CSS_SELECTOR, ".widget-dropdown select"), 240)
    text, src = _wait("the explorer's report and figure", lambda: _explorer_state(browser), 120)
    _shot(browser, "2_ran")
    assert "trained model" in text

    a = _dropdown(browser, "class A")
    other = next(o.text for o in a.options if o.text != a.first_selected_option.text
                 and o.text != _dropdown(browser, "class B").first_selected_option.text)
    a.select_by_visible_text(other)
    text2, src2 = _wait("the report to follow class A", lambda: (
        s := _explorer_state(browser)) and other in s[0] and s[1] != src and s, 120)
    _shot(browser, "3_class_a_changed")
    assert text2 != text and src2 != src

    _dropdown(browser, "model").select_by_visible_text("random")
    text3, src3 = _wait("the report to follow the model", lambda: (
        s := _explorer_state(browser)) and "random model" in s[0] and s[1] != src2 and s, 120)
    _shot(browser, "4_random_model")
    assert "no cross-evaluation for the random model" in text3 and src3 != src2
    print(f"browser test: {time.time() - t0:.0f} s from opening the notebook")
