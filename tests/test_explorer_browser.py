"""The RID explorer driven in a real browser: JupyterLab on a free localhost port (with a token),
Debian's headless Chromium + chromedriver through selenium, notebook 14 on the smoke profile in a
working copy under tmp. Real input only for what a person does: a mouse drag on a slider, typing a
model name, clicking buttons. Screenshots go to outputs/explorer_browser/ (git-ignored).

scripts/test.sh installs chromium and chromium-driver when they are missing (as root). Without them
this test skips locally and fails in CI (CI=true), so CI never passes without driving the browser.
"""
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
SHOTS = ROOT / "outputs" / "explorer_browser"
EXPLORER = ".dlp-rid-explorer"
IDLE = "return window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle';"


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs the browser test: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """(base url, token, notebook name) of a JupyterLab server on a working copy of notebook 14 (smoke)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (requirements.txt pins it; run scripts/setup.sh)")
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (apt-get install -y chromium chromium-driver; scripts/test.sh "
                         "does it when run as root)")
    from dlp_lib.cache import cache_root
    from dlp_lib.explorer import explorer_notebook

    work = tmp_path_factory.mktemp("explorer_browser")
    notebook = explorer_notebook(work / "notebooks", "smoke")
    # A fresh cache (so pass 1 and the pruning really run and their progress shows) that shares
    # only the downloaded corpora with the real one.
    cache = work / "cache"
    cache.mkdir()
    for shared in ("corpora", "downloads"):
        if (cache_root() / shared).exists():
            (cache / shared).symlink_to(cache_root() / shared)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DLP_CACHE_DIR": str(cache), "DLP_FIGURES_DIR": str(work / "figures"),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"), "JUPYTER_CONFIG_DIR": str(work / "config")}
    log = open(work / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook.parent}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
        cwd=notebook.parent, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(work / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url, token, notebook.name
    finally:
        if server.poll() is None:
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
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def _wait(driver, what, seconds: float, message: str):
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1).until(lambda d: what())
    except Exception:
        _shot(driver, "failure")
        raise AssertionError(f"{message}; status line: {_status(driver)!r}") from None


def _shot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _status(driver) -> str:
    return driver.execute_script(
        f"const s = document.querySelector('{EXPLORER} .dlp-status'); return s ? s.textContent : '';")


def _plot_png(driver) -> str:
    return driver.execute_script(
        f"const i = document.querySelector('{EXPLORER} .widget-tab img'); return i ? i.src : '';")


def _control(driver, label: str, css: str):
    """The element `css` inside the explorer control whose description is `label`."""
    from selenium.webdriver.common.by import By
    xpath = (f"//div[contains(@class,'dlp-rid-explorer')]//div[contains(@class,'widget-inline-hbox')]"
             f"[.//label[normalize-space()='{label}']]")
    return driver.find_element(By.XPATH, xpath).find_element(By.CSS_SELECTOR, css)


def _typed(driver, label: str, text: str) -> None:
    """Type `text` into the explorer's text field `label` (replacing what is there), then wait for the
    kernel to go idle: ipywidgets holds back value updates while the kernel has not answered the
    previous one, whereas a button click is sent at once, so a click right after typing can reach
    the kernel before the text does."""
    from selenium.webdriver.common.keys import Keys
    field = _control(driver, label, "input")
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(text)
    assert field.get_attribute("value") == text
    for _ in range(2):
        time.sleep(0.5)
        _wait(driver, lambda: driver.execute_script(IDLE), 30, "the kernel stayed busy")


def _button(driver, text: str):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.XPATH, f"//div[contains(@class,'dlp-rid-explorer')]//button[normalize-space()="
                                         f"'{text}']")


def test_explorer_in_a_real_browser(jupyterlab, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    url, token, name = jupyterlab
    browser.get(f"{url}/lab/tree/{name}?token={token}")
    _wait(browser, lambda: browser.execute_script(
        "const a = window.jupyterapp; const w = a && a.shell.currentWidget;"
        "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.status === 'idle');"), 60, "the notebook's kernel did not start")
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    # widgets render and the dense pass ran by itself
    _wait(browser, lambda: "blocks;" in _status(browser) and _plot_png(browser), 90,
          "the explorer did not render its first plan")
    _wait(browser, lambda: browser.execute_script(IDLE), 60, "the notebook did not finish")
    sliders = browser.find_elements("css selector", f"{EXPLORER} .widget-slider")
    assert len(sliders) >= 4
    _shot(browser, "rendered")

    # the layout wraps instead of clipping at 1280 px: no control column sticks out of the explorer
    overflow = browser.execute_script(f"""
        const x = document.querySelector('{EXPLORER}'); x.scrollIntoView(); const r = x.getBoundingClientRect();
        const out = x.closest('.jp-OutputArea-output'); const cols = Array.from(x.firstElementChild.children);
        return {{scroll: x.scrollWidth - x.clientWidth, output_scroll: out.scrollWidth - out.clientWidth,
                 columns: cols.length, outside: cols.filter(c => c.getBoundingClientRect().right > r.right + 1).length}};""")
    _shot(browser, "explorer")
    assert overflow == {"scroll": 0, "output_scroll": 0, "columns": 4, "outside": 0}, overflow

    # a mouse drag on the sparsity slider re-plans: the readout and the plot's image change
    before_png = _plot_png(browser)
    readout = _control(browser, "sparsity p", ".widget-readout")
    before_value = readout.text
    handle = _control(browser, "sparsity p", ".noUi-handle")
    ActionChains(browser).click_and_hold(handle).move_by_offset(-60, 0).release().perform()
    _wait(browser, lambda: readout.text != before_value, 10, "the sparsity readout did not move")
    _wait(browser, lambda: _plot_png(browser) not in ("", before_png), 30, "the plot did not change")
    assert float(readout.text) < float(before_value)
    # arrow keys on the focused slider move the slider, not the notebook's active cell
    active = "return window.jupyterapp.shell.currentWidget.content.activeCellIndex"
    cell, dragged = browser.execute_script(active), readout.text
    ActionChains(browser).send_keys_to_element(handle, Keys.ARROW_RIGHT).perform()
    _wait(browser, lambda: readout.text != dragged, 10, "the arrow key did not move the slider")
    assert float(readout.text) == pytest.approx(float(dragged) + 0.01)
    ActionChains(browser).send_keys_to_element(handle, Keys.ARROW_DOWN).perform()
    assert browser.execute_script(active) == cell
    assert f"{float(readout.text):.2f}" in browser.execute_script(
        f"return document.querySelector('{EXPLORER}').textContent")

    # prune + evaluate: busy, job buttons disabled and the engine's progress bar in the explorer meanwhile
    # (watched in the page: a MutationObserver sees every state, however short the job)
    browser.execute_script(f"""
        const x = document.querySelector('{EXPLORER}'); window.dlpSeen = {{busy: false, disabled: false, bar: false}};
        const look = () => {{
            const s = x.querySelector('.dlp-status'), b = Array.from(x.querySelectorAll('button'))
                .find(b => b.textContent.trim() === 'dense pass (statistics)');
            window.dlpSeen.busy ||= !!s && s.textContent.startsWith('busy:');
            window.dlpSeen.disabled ||= !!b && b.disabled;
            window.dlpSeen.bar ||= !!x.querySelector('.widget-hprogress');
        }};
        new MutationObserver(look).observe(x, {{subtree: true, childList: true, attributes: true, characterData: true}});""")
    _button(browser, "prune + evaluate").click()
    _wait(browser, lambda: "achieved" in _status(browser), 60, "prune + evaluate did not finish")
    seen = browser.execute_script("return window.dlpSeen")
    assert "achieved" in _status(browser), _status(browser)
    assert seen == {"busy": True, "disabled": True, "bar": True}, seen
    assert _button(browser, "prune + evaluate").is_enabled()

    # a second model side by side: its curves against relative depth and its Spearman row
    _typed(browser, "add model", "tiny-qwen2")
    _button(browser, "add to comparison").click()
    _wait(browser, lambda: "2 model(s) side by side" in _status(browser), 60, "the second model was not added")
    browser.find_element("xpath", "//div[contains(@class,'dlp-rid-explorer')]//*[contains(@class,'lm-TabBar-tab')]"
                                  "[normalize-space()='models side by side']").click()
    table = _wait(browser, lambda: browser.execute_script(
        f"const t = Array.from(document.querySelectorAll('{EXPLORER} .widget-tab table'))"
        ".find(t => t.offsetParent && t.textContent.includes('Spearman(depth, S)') && t.textContent.includes('tiny-qwen2'));"
        "return t ? t.textContent : '';"), 30, "no comparison table with the added model")
    assert "tiny-llama" in table
    _shot(browser, "side_by_side")

    # a bad model shows its error, in red, in the status line; the buttons work again
    _typed(browser, "model", "./no-such-model")
    _button(browser, "dense pass (statistics)").click()
    _wait(browser, lambda: browser.find_elements("css selector", f"{EXPLORER} .dlp-error"), 30,
          "no error in the status line")
    assert "error: Model path './no-such-model': no such file or directory" in _status(browser)
    assert _button(browser, "dense pass (statistics)").is_enabled() and _button(browser, "prune + evaluate").is_enabled()
    _shot(browser, "error")

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
