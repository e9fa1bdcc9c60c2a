"""The generated docs are committed as generated, and the README names what users need."""

from pathlib import Path

from fluxlora_api.spec import LoRATrainingJobSpec
from fluxlora_api.status import LoRATrainingJobStatus, Phase
from fluxlora_operator.settings import OperatorSettings, render_settings_doc

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_operator_settings_doc_is_what_the_settings_generate():
    assert (ROOT / "docs" / "operator.md").read_text() == render_settings_doc(), "run make crds"
    assert len(OperatorSettings.model_fields) == render_settings_doc().count("| `--")


def test_the_readme_lists_every_spec_and_status_field():
    for model in (LoRATrainingJobSpec, LoRATrainingJobStatus):
        for field in model.model_fields.values():
            assert f"`{field.alias}`" in README, f"README does not mention {field.alias}"


def test_the_readme_explains_every_phase_and_the_two_commands():
    for phase in Phase:
        assert f"| `{phase.value}` |" in README
    assert "make test" in README and "make demo" in README
