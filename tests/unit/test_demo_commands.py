"""The commands the demo prints can be pasted into a shell as they are."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = "flk_5QUAqbuExmdsGfI02JkmPBBEil_qz109UUB2z6XmrB8"  # a key's shape: URL-safe base64


@pytest.fixture(scope="module")
def local_demo():
    spec = importlib.util.spec_from_file_location("local_demo", ROOT / "examples/local_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pasted(word: str, **environment: str) -> str:
    """What a shell makes of `word`, as printf receives it."""
    done = subprocess.run(["bash", "-c", f"printf %s {word}"], env=environment,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout


def test_the_key_is_shown_as_key_and_expands_when_pasted(local_demo):
    word = local_demo.shown_with_key(f"Authorization: Bearer {KEY}", KEY)
    assert KEY not in word and "$KEY" in word
    assert pasted(word, KEY="flk_mine") == "Authorization: Bearer flk_mine"


@pytest.mark.parametrize("arg", ["file=@/tmp/a b/portrait.zip", 'it\'s $HOME `x` "q"', "-"])
def test_other_words_reach_the_shell_unchanged(local_demo, arg):
    assert pasted(local_demo.shown_with_key(arg, KEY), HOME="/elsewhere") == arg
    key_too = local_demo.shown_with_key(f"{arg} {KEY}", KEY)
    assert pasted(key_too, KEY="k", HOME="/elsewhere") == f"{arg} k"
