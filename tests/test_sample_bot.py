"""The sample bot: the README's `python -m sample_bot` as a real process, the whole loop
over HTTP, and the web console driven in headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import ROOT, eventually
from werkzeug.serving import make_server

from chatwoot_mirror.sample_bot import build
from chatwoot_mirror.sample_bot.__main__ import SHUTDOWN_SECONDS
from chatwoot_mirror.sample_bot.faq import FALLBACK

HANDOFF = "Certo! Vou te passar para um atendente. Aguarde um instante, por favor."
ENTREGA = "Entregamos em toda a cidade em até 2 dias úteis. O frete é grátis acima de R$ 150."
HORARIO = "Funcionamos de segunda a sexta, das 8h às 18h, e aos sábados, das 9h às 12h."




@pytest.fixture
def sample(tmp_path):
    server = make_server("127.0.0.1", 0, app=None, threaded=True)  # type: ignore[arg-type]
    bot = build(server.server_port, {"CHATWOOT_MIRROR_DB": str(tmp_path / "m.db"),
                                     "PATH": os.environ.get("PATH", "")})
    server.app = bot.app
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield bot
    server.shutdown()
    bot.close()


def phone_texts(bot) -> list[tuple[str, str]]:
    return [(m["from"], m["text"]) for m in bot.phone.messages]


def test_the_whole_loop_over_http(sample):
    base = sample.base_url
    post = lambda path, body: requests.post(base + path, json=body, timeout=10)  # noqa: E731
    assert post("/demo/phone/send", {"text": "Vocês entregam no sábado?"}).status_code == 200
    assert eventually(lambda: ("business", ENTREGA) in phone_texts(sample))
    assert sample.mirror.flush()
    state = requests.get(base + "/demo/state", timeout=5).json()
    [conv] = state["conversations"]
    assert [(m["who"], m["content"]) for m in conv["messages"]] == [
        ("customer", "Vocês entregam no sábado?"), ("bot", ENTREGA)]

    post("/demo/phone/send", {"text": "quero falar com um atendente"})
    assert eventually(lambda: ("business", HANDOFF) in phone_texts(sample))
    assert requests.get(base + "/demo/state", timeout=5).json()["bot_paused"]
    assert post("/demo/agent/reply", {"conversation_id": conv["id"],
                                      "text": "Oi Maria, sou a Ana."}).json() == {"ok": True}
    assert eventually(lambda: ("business", "Oi Maria, sou a Ana.") in phone_texts(sample))
    post("/demo/agent/note", {"conversation_id": conv["id"], "text": "cliente VIP"})
    post("/demo/phone/send", {"text": "e o horário?"})
    time.sleep(0.5)
    assert ("business", HORARIO) not in phone_texts(sample)  # the bot stays silent
    post("/demo/agent/resolve", {"conversation_id": conv["id"]})
    assert eventually(lambda: not requests.get(base + "/demo/state",
                                               timeout=5).json()["bot_paused"])
    post("/demo/phone/send", {"text": "e o horário?"})
    assert eventually(lambda: phone_texts(sample)[-1] == ("business", HORARIO))
    assert ("business", "cliente VIP") not in phone_texts(sample)
    assert sample.mirror.flush()
    final = requests.get(base + "/demo/state", timeout=5).json()["conversations"][0]
    reply = [m for m in final["messages"] if m["content"] == "Oi Maria, sou a Ana."][0]
    assert reply["status"] == "delivered" and reply["who"] == "agent Ana Agente"


def test_console_api_refuses_bad_input(sample):
    base = sample.base_url
    assert requests.post(base + "/demo/phone/send", json={}, timeout=5).status_code == 400
    assert requests.post(base + "/demo/agent/reply", json={"text": "x"},
                         timeout=5).status_code == 400
    missing = {"conversation_id": 999999, "text": "x"}
    assert requests.post(base + "/demo/agent/reply", json=missing,
                         timeout=5).status_code == 404
    assert requests.post(base + "/demo/agent/explode", json={"conversation_id": 1},
                         timeout=5).status_code == 404


def test_faq_fallback(sample):
    sample.phone.type("qual a capital da França")
    assert eventually(lambda: phone_texts(sample)[-1] == ("business", FALLBACK))


@pytest.mark.parametrize("command,where", [
    (["-m", "sample_bot"], "clone"),  # from the clone, as the README says
    (["-m", "chatwoot_mirror", "demo"], "anywhere"),  # chatwoot-mirror demo, installed
])
def test_the_sample_bot_runs_as_the_readme_says(tmp_path, command, where):
    env = {**os.environ, "PORT": "0", "CHATWOOT_MIRROR_DB": str(tmp_path / "m.db")}
    env = {k: v for k, v in env.items() if not k.startswith("CHATWOOT_") or k ==
           "CHATWOOT_MIRROR_DB"}
    cwd = ROOT if where == "clone" else tmp_path
    process = subprocess.Popen([sys.executable, *command], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.lstrip().startswith("console") for line in lines):
            line = process.stdout.readline()
            assert line, process.stderr.read()
            lines.append(line)
        console = next(line.split()[-1] for line in lines if line.lstrip().startswith("console"))
        assert requests.get(console, timeout=5).status_code == 200
        requests.post(console + "demo/phone/send", json={"text": "oi"}, timeout=10)
        assert eventually(lambda: requests.get(console + "demo/phone/messages", timeout=5).json()
                          ["messages"][-1]["from"] == "business")
    finally:
        process.send_signal(signal.SIGTERM)
        # communicate, not wait: both pipes are read, so the child never blocks on a full
        # one; the bound is the sample's own (its watchdog exits 1 naming what still ran)
        _, errors = process.communicate(timeout=SHUTDOWN_SECONDS + 30)
        assert process.returncode == 0, errors[-2000:]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("MIRROR_TEST_REQUIRE_BROWSER") == "1"


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if REQUIRED:
            pytest.fail("chromium and chromedriver are required (apt-get install chromium "
                        "chromium-driver)")
        pytest.skip("no chromium/chromedriver on this machine (apt-get install chromium "
                    "chromium-driver); CI installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


SHOTS = os.environ.get("MIRROR_TEST_SCREENSHOTS")  # a folder to keep the screenshots in


def in_view(browser, element_id: str) -> bool:
    """The element is inside the window, not scrolled off or cut by the layout."""
    return browser.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return r.top >= 0 && r.left >= 0 && r.bottom <= window.innerHeight"
        " && r.right <= window.innerWidth && r.width > 0;", element_id)


def shoot(browser, tmp_path, name: str) -> None:
    browser.save_screenshot(str(tmp_path / f"{name}.png"))
    if SHOTS:
        browser.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def test_console_in_a_browser(sample, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20, ignored_exceptions=[StaleElementReferenceException])
    browser.set_window_size(1400, 900)
    browser.get(sample.base_url + "/")

    def phone_says(text: str) -> bool:
        return any(e.text == text for e in
                   browser.find_elements(By.CSS_SELECTOR, "#phone-messages .business"))

    def type_as_customer(text: str) -> None:
        box = browser.find_element(By.ID, "phone-input")
        box.send_keys(text)
        browser.find_element(By.ID, "phone-send").click()

    def header() -> str:
        return browser.find_element(By.ID, "bot-state").text

    def conv(css: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, css).text

    # both panes say what to do before anything happened; the page has an icon
    wait.until(lambda _: "Qual o horário?" in conv("#phone-messages .hint"))
    assert "atendente" in conv("#agent-messages .hint")
    assert browser.execute_script(
        "return document.querySelector('link[rel=icon]').href.startsWith('data:image/svg')")
    shoot(browser, tmp_path, "console-empty-1400")

    type_as_customer("Qual o horário de vocês?")
    wait.until(lambda _: phone_says(HORARIO))

    type_as_customer("quero falar com um atendente")          # keyword handoff
    wait.until(lambda _: phone_says(HANDOFF))
    wait.until(lambda _: "waiting for an agent" in header())   # paused, nobody assigned yet
    assert "paused" in header() and "o cliente pediu um atendente" in header()
    wait.until(lambda _: conv(".conv-status").lower() == "open")
    wait.until(lambda _: any("Conversa transferida pelo bot" in e.text for e in
                             browser.find_elements(By.CSS_SELECTOR, "#agent-messages .private")))
    note = next(e.text for e in browser.find_elements(By.CSS_SELECTOR, "#agent-messages .private"))
    assert "o cliente pediu um atendente" in note and "keyword_detected" not in note

    browser.find_element(By.ID, "agent-takeover").click()
    wait.until(lambda _: "Ana Agente" in conv(".conv-assignee"))
    wait.until(lambda _: "Ana Agente has the customer" in header())
    browser.find_element(By.ID, "agent-input").send_keys("Olá Maria, aqui é a Ana!")
    browser.find_element(By.ID, "agent-reply").click()
    wait.until(lambda _: phone_says("Olá Maria, aqui é a Ana!"))  # reached the customer
    wait.until(lambda _: any("delivered" in e.text for e in browser.find_elements(
        By.CSS_SELECTOR, "#agent-messages .agent-msg")))

    # many messages: the lists scroll inside their panes, the buttons stay on screen
    for i in range(18):
        type_as_customer(f"mensagem número {i}")
    wait.until(lambda _: any(e.text.endswith("mensagem número 17") for e in
                             browser.find_elements(By.CSS_SELECTOR, "#agent-messages .agent-msg")))
    for element_id in ("agent-reply", "agent-takeover", "agent-resolve", "phone-send"):
        assert in_view(browser, element_id), element_id
    shoot(browser, tmp_path, "console-handoff-1400")

    # text can be selected and copied: the polling does not redraw under a selection
    browser.execute_script(
        "const node = document.querySelector('#phone-messages .customer');"
        "const range = document.createRange(); range.selectNodeContents(node);"
        "window.getSelection().removeAllRanges(); window.getSelection().addRange(range);")
    selected = browser.execute_script("return window.getSelection().toString()")
    assert selected
    # the list changes while the selection is held (sent from outside the page: typing
    # would move the focus, and the selection with it)
    requests.post(sample.base_url + "/demo/phone/send", json={"text": "chegou mais uma"},
                  timeout=10)
    time.sleep(2)  # three polls
    assert browser.execute_script("return window.getSelection().toString()") == selected
    browser.execute_script("window.getSelection().removeAllRanges()")
    wait.until(lambda _: any(e.text == "chegou mais uma" for e in browser.find_elements(
        By.CSS_SELECTOR, "#phone-messages .customer")))

    browser.find_element(By.ID, "agent-resolve").click()
    wait.until(lambda _: conv(".conv-status").lower() == "resolved")
    wait.until(lambda _: header() == "bot: answering")
    type_as_customer("Vocês entregam?")                       # the bot answers again
    wait.until(lambda _: phone_says(ENTREGA))
    wait.until(lambda _: any(e.text.endswith(ENTREGA) for e in browser.find_elements(
        By.CSS_SELECTOR, "#agent-messages .agent-msg")))         # mirrored as the bot's
    # what Chatwoot shows agrees with the bot answering: the bot's, not Ana's
    wait.until(lambda _: conv(".conv-status").lower() == "pending")
    assert conv(".conv-assignee") == "unassigned" and header() == "bot: answering"

    browser.set_window_size(480, 900)                         # a phone-sized window
    wait.until(lambda _: in_view(browser, "agent-resolve"))
    for element_id in ("agent-reply", "agent-takeover", "agent-resolve", "phone-send"):
        assert in_view(browser, element_id), element_id
    shoot(browser, tmp_path, "console-480")
