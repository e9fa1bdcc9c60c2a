"""`fluxlora-trainer dataset inspect`: check a zip before submitting it."""

import json

from fluxlora_api.contract import ExitCode
from fluxlora_localcluster.datasets import image_bytes, make_zip, photos
from fluxlora_trainer.cli import main
from fluxlora_trainer.images import NOT_READABLE


def run(capsys, *argv):
    code = main(["dataset", "inspect", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_inspect_prints_each_usable_image_and_each_skipped_file(tmp_path, capsys):
    archive = make_zip(
        tmp_path / "d.zip",
        {**photos(4), "photo_0.txt": "me, [trigger]", "broken.png": b"nope", ".DS_Store": b""},
    )
    code, lines, err = run(capsys, str(archive), "--trigger-word", "zq")
    assert code == ExitCode.SUCCESS
    assert lines[0] == {"image": "photo_0.jpg", "caption": "me, zq", "width": 64, "height": 48}
    assert [line["caption"] for line in lines[1:4]] == ["zq", "zq", "zq"]
    assert {"skipped": "broken.png", "reason": NOT_READABLE} in lines
    assert {"skipped": ".DS_Store", "reason": "hidden file"} in lines
    assert err == ""


def test_inspect_without_a_trigger_word(tmp_path, capsys):
    archive = make_zip(tmp_path / "d.zip", {"a.jpg": image_bytes()})
    code, lines, err = run(capsys, str(archive), "--no-trigger-word")
    assert code == ExitCode.SUCCESS
    assert lines == [{"image": "a.jpg", "caption": "", "width": 64, "height": 48}]
    assert "only 1 usable image(s); at least 4 are recommended" in err


def test_inspect_exits_with_the_bad_input_code_for_an_unusable_dataset(tmp_path, capsys):
    archive = make_zip(tmp_path / "d.zip", {"notes.txt": "no images here"})
    code, lines, err = run(capsys, str(archive))
    assert code == ExitCode.BAD_INPUT
    assert "has no usable image" in lines[0]["error"]
    assert "has no usable image" in err
