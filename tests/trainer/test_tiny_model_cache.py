"""The demo's tiny model is written once per machine and version, then reused as it is."""

import json

import pytest

from fluxlora_localcluster.tiny_model_cache import FAMILY, cached_tiny_model, tiny_model_key
from fluxlora_trainer import tiny_model


def test_the_tiny_model_is_written_once_then_reused_and_an_older_version_goes(
    tmp_path, monkeypatch: pytest.MonkeyPatch
):
    older = tmp_path / "models" / f"{FAMILY}000000000000"
    older.mkdir(parents=True)
    (older / "model_index.json").write_text("{}")

    folder = cached_tiny_model(tmp_path)
    assert folder == tmp_path / "models" / f"{FAMILY}{tiny_model_key()}"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    assert (folder / "transformer" / "config.json").is_file()
    assert not older.exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [folder.name]  # no staging left

    def never(*args, **kwargs):
        raise AssertionError("the cached model was written again")

    monkeypatch.setattr(tiny_model, "write_tiny_model", never)
    assert cached_tiny_model(tmp_path) == folder


def test_the_key_follows_the_recipe_and_the_libraries(monkeypatch: pytest.MonkeyPatch):
    import fluxlora_localcluster.tiny_model_cache as cache

    key = tiny_model_key()
    assert tiny_model_key() == key
    monkeypatch.setattr(cache, "version", lambda library: "0.0.1")
    assert tiny_model_key() != key


def test_make_tiny_model_writes_it_saying_so_then_finds_it_silently(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    import fluxlora_localcluster.tiny_model_cache as cache

    monkeypatch.setattr(cache, "CACHE", tmp_path)
    cache.main()
    said = capsys.readouterr().out
    assert said.startswith("writing the demo's tiny model, once per machine ...\n")
    assert f"{tmp_path}/models/{FAMILY}{tiny_model_key()}" in said
    assert (tmp_path / "models" / f"{FAMILY}{tiny_model_key()}" / "model_index.json").is_file()
    cache.main()
    assert capsys.readouterr().out == ""
