"""The web page in a real headless Chromium, against the gateway on the real control plane with
runs training on the real node: sign in with a key (a wrong one is refused), upload the demo
zip with a progress bar and see its images and captions as the trainer reads them (a zip without
images is refused at once), start a run that samples every 100 steps, watch its progress and loss
chart move and its samples appear step by step, download the LoRA; cancel a second run; read a
failed run's error; another tenant's run is not reachable by its URL; usable at phone width.
Screenshots of each page go to FLUXLORA_SCREENSHOTS (the README's) or the test's folder."""

import json
import os
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from fluxlora_gateway.hosted import MODEL_ID
from fluxlora_localcluster.browser import PHONE, full_page_screenshot, headless_chromium
from fluxlora_localcluster.datasets import make_zip, photos
from fluxlora_localcluster.waiting import eventually

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("FLUXLORA_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def text(browser, element_id: str) -> str:
    return browser.execute_script(f"return document.getElementById('{element_id}').innerText")


def read(browser, selector: str, script: str) -> list:
    """`script` (an expression of `e`) of every element matching `selector`, read in one go:
    the page re-renders what it polls, so element references would go stale."""
    return browser.execute_script(
        f"return [...document.querySelectorAll('{selector}')].map((e) => {script})"
    )


def sign_in(browser, url: str, key: str) -> None:
    browser.get(f"{url}/ui/")
    field = browser.find_element(By.ID, "key")
    field.clear()
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#sign-in button").click()


def submit(gateway, key: str, **body) -> str:
    status, answer = gateway.call("POST", f"/api/v3/{MODEL_ID}", key, json.dumps(body).encode())
    assert status == 200, answer
    return answer["data"]["id"]


async def test_a_person_trains_watches_and_downloads_a_lora_in_the_browser(
    site, gateway, two_tenants, host_s3, tmp_path, screenshots
):
    gateway.s3 = host_s3.client()
    mine, theirs, _ = two_tenants
    dataset = make_zip(tmp_path / "portrait.zip", photos(4))
    with headless_chromium(tmp_path / "downloads") as browser:
        # A wrong key says so, and opens nothing.
        sign_in(browser, gateway.url, "flk_not-a-key")
        await eventually(lambda: "That key was refused" in text(browser, "notice"), "refused")
        assert browser.find_element(By.ID, "runs-view").get_attribute("hidden")
        browser.save_screenshot(str(screenshots / "sign-in.png"))

        sign_in(browser, gateway.url, mine)
        await eventually(lambda: browser.find_element(By.ID, "no-runs").is_displayed(), "list")

        # A new run: the API's ranges are checked before anything is sent.
        browser.get(f"{gateway.url}/ui/#/new")
        rank = await eventually(lambda: browser.find_elements(By.ID, "lora_rank"), "the form")
        rank[0].clear()
        rank[0].send_keys("100")
        browser.find_element(By.ID, "start").click()
        assert "lora_rank: at most 64" in text(browser, "form-error")
        rank[0].clear()
        rank[0].send_keys("8")
        steps = browser.find_element(By.ID, "steps")
        steps.clear()
        steps.send_keys("500")
        # The zip is uploaded and checked by the trainer's rules as soon as it is chosen.
        notes = make_zip(tmp_path / "notes.zip", {"notes.txt": "no images here"})
        browser.find_element(By.ID, "zip").send_keys(str(notes))
        await eventually(
            lambda: "has no usable image" in text(browser, "dataset-preview"), "refused", 60
        )
        browser.find_element(By.ID, "zip").send_keys(str(dataset))

        def previews() -> list[str]:
            return read(browser, "#dataset-preview figcaption span", "e.textContent")

        shown = await eventually(lambda: len(previews()) == 4 and previews(), "the preview", 60)
        assert shown == ["p3r5on"] * 4  # each image's caption: the trigger word
        thumbnails = read(browser, "#dataset-preview img", "e.src")
        assert len(thumbnails) == 4 and all(src.startswith("data:image/jpeg") for src in thumbnails)
        browser.find_element(By.ID, "sample_prompts").send_keys("a photo of p3r5on")
        browser.find_element(By.ID, "sample_every_steps").send_keys("100")
        browser.find_element(By.ID, "save_every_steps").send_keys("200")
        full_page_screenshot(browser, screenshots / "new-run.png")
        browser.find_element(By.ID, "start").click()
        await eventually(lambda: "#/runs/" in browser.current_url, "the run's page", 60)
        bar = browser.find_element(By.ID, "upload-progress")
        assert bar.get_attribute("value") == "100"  # the upload's progress bar filled
        run_id = browser.current_url.rsplit("/", 1)[-1]

        # It trains: the progress bar and the loss chart move, samples appear per step.
        def progress() -> int:
            values = read(browser, "#run-progress progress", "e.value")
            return int(values[0]) if values else 0

        first = await eventually(progress, "training starts", 240)
        await eventually(lambda: progress() > first, "the progress bar moves", 120)

        def sample_columns() -> list[str]:
            return read(browser, "#snapshots th", "e.textContent")

        await eventually(lambda: "step 200" in sample_columns(), "samples of step 200", 240)
        await eventually(
            lambda: all(
                src.startswith("blob:") for src in read(browser, "#snapshots img", "e.src")
            ),
            "the sample images load with the key",
        )
        points = int(browser.find_element(By.ID, "loss-chart").get_attribute("data-points"))
        assert points > 0
        full_page_screenshot(browser, screenshots / "run-training.png")

        await eventually(lambda: text(browser, "run-status") == "completed", "completed", 300)
        assert "step 100" in sample_columns() and "final" in sample_columns()
        # The stored loss curve: one point per step.
        await eventually(
            lambda: (
                int(browser.find_element(By.ID, "loss-chart").get_attribute("data-points")) == 500
            ),
            "the whole loss curve",
        )
        full_page_screenshot(browser, screenshots / "run-completed.png")
        browser.execute_script(
            "document.querySelector('#downloads button[data-file=\"lora.safetensors\"]').click()"
        )
        saved = tmp_path / "downloads" / "lora.safetensors"
        await eventually(saved.exists, "the LoRA is downloaded")
        assert saved.read_bytes()[8:9] == b"{"  # a safetensors header
        # Each snapshot's LoRA has its download buttons, both formats.
        assert read(browser, "#snapshots button", "e.dataset.file") == [
            "lora-step-000200.safetensors", "lora_comfyui-step-000200.safetensors",
            "lora-step-000400.safetensors", "lora_comfyui-step-000400.safetensors",
        ]  # fmt: skip

        # Cancel a second run (with a confirm); it is gone from the list. Its dataset is one
        # the trainer reads at once, so that the cancelled pod stops at once and frees the GPU.
        site.s3.upload_file(str(dataset), site.bucket, "data/p.zip")
        doomed = submit(gateway, mine, data=f"s3://{site.bucket}/data/p.zip", steps=4000)
        browser.get(f"{gateway.url}/ui/#/runs/{doomed}")
        cancel = await eventually(
            lambda: (
                browser.find_element(By.ID, "cancel").is_displayed()
                and browser.find_element(By.ID, "cancel")
            ),
            "the cancel button",
        )
        cancel.click()
        browser.switch_to.alert.accept()
        await eventually(lambda: "The run was cancelled" in text(browser, "notice"), "cancelled")
        status, _ = gateway.call("GET", f"/api/v3/predictions/{doomed}/result", mine)
        assert status == 404

        # A failed run shows its error in full.
        broken = submit(gateway, mine, data="http://127.0.0.1:9/nothing.zip", steps=500)
        browser.get(f"{gateway.url}/ui/#/runs/{broken}")
        await eventually(lambda: text(browser, "run-status") == "failed", "failed", 240)
        error = text(browser, "run-error")
        assert "data" in error and len(error) > 20
        browser.save_screenshot(str(screenshots / "run-failed.png"))

        # The list, newest first; at phone width nothing runs off the screen.
        browser.get(f"{gateway.url}/ui/#/runs")
        # Newest first; the cancelled one is gone.
        await eventually(
            lambda: read(browser, "#runs tbody tr", "e.dataset.id") == [broken, run_id], "list"
        )
        status_filter = Select(browser.find_element(By.ID, "status-filter"))
        status_filter.select_by_value("failed")
        await eventually(
            lambda: read(browser, "#runs tbody tr", "e.dataset.id") == [broken],
            "only the failed run",
        )
        status_filter.select_by_value("")
        await eventually(lambda: len(read(browser, "#runs tbody tr", "e.id")) == 2, "all runs")
        browser.set_window_size(*PHONE)
        await eventually(
            lambda: browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth"
            ),
            "no sideways scrolling at phone width",
        )
        browser.save_screenshot(str(screenshots / "runs-phone.png"))

        # Another tenant's key cannot reach this run by its URL.
        browser.find_element(By.ID, "sign-out").click()
        sign_in(browser, gateway.url, theirs)
        await eventually(lambda: browser.find_element(By.ID, "no-runs").is_displayed(), "theirs")
        browser.get(f"{gateway.url}/ui/#/runs/{run_id}")
        await eventually(lambda: "not found" in text(browser, "notice"), "not reachable")
        assert text(browser, "run-name") == ""
