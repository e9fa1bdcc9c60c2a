"""The libraries' progress bars are off in a log and on at a terminal; the hub's stay."""

import io

from diffusers.utils import logging as diffusers_logging
from huggingface_hub import utils as hub
from transformers.utils import logging as transformers_logging

from fluxlora_trainer.quiet import library_bars_off, library_bars_off_in_logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def bars() -> tuple[bool, bool, bool]:
    return (
        diffusers_logging.is_progress_bar_enabled(),
        transformers_logging.is_progress_bar_enabled(),
        not hub.are_progress_bars_disabled(),
    )


def test_bars_are_off_inside_and_back_after_the_hubs_always_on():
    assert bars() == (True, True, True)
    with library_bars_off():
        assert bars() == (False, False, True)
    assert bars() == (True, True, True)


def test_off_in_a_log_on_at_a_terminal():
    with library_bars_off_in_logs(io.StringIO()):
        assert bars() == (False, False, True)
    with library_bars_off_in_logs(Terminal()):
        assert bars() == (True, True, True)
    assert bars() == (True, True, True)


def test_bars_turned_off_before_stay_off():
    transformers_logging.disable_progress_bar()
    try:
        with library_bars_off():
            pass
        assert not transformers_logging.is_progress_bar_enabled()
        assert hub.are_progress_bars_disabled()  # transformers turned the hub's off with it
    finally:
        transformers_logging.enable_progress_bar()
