"""The spec is the hosted API's request: same defaults, same ranges, errors that name the field."""

import re

import pytest
from pydantic import ValidationError

from fluxlora_api.spec import (
    SAMPLES_NEED_PROMPTS,
    WEBHOOK_LINK_LOCAL,
    WEBHOOK_LINK_LOCAL_PATTERN,
    LoRATrainingJobSpec,
)
from fluxlora_operator.start.custom_resource import InvalidSpec, parse_spec

DATA = "https://example.com/photos.zip"


def test_a_spec_with_only_data_trains_like_the_hosted_api_defaults():
    spec = LoRATrainingJobSpec(data=DATA)
    assert (spec.trigger_word, spec.steps, spec.effective_learning_rate, spec.lora_rank) == (
        "p3r5on",
        1000,
        0.0004,
        16,
    )
    assert spec.effective_trigger_word == "p3r5on"
    assert spec.effective_lora_alpha == 16
    assert spec.base_model == "black-forest-labs/FLUX.1-dev"
    assert spec.gpus is None  # the operator's default applies


def test_the_hosted_request_body_validates_with_its_snake_case_names():
    body = {
        "data": DATA,
        "trigger_word": "zxq",
        "steps": 1500,
        "learning_rate": 0.0001,
        "lora_rank": 32,
    }
    spec = LoRATrainingJobSpec.model_validate(body)
    assert (spec.trigger_word, spec.steps, spec.learning_rate, spec.lora_rank) == (
        "zxq",
        1500,
        0.0001,
        32,
    )


@pytest.mark.parametrize("word", [None, "", "   "])
def test_null_or_blank_trigger_word_means_no_trigger_word(word):
    assert LoRATrainingJobSpec(data=DATA, trigger_word=word).effective_trigger_word is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 499),
        ("steps", 4001),
        ("steps", 1000.5),
        ("learningRate", -0.0001),
        ("learningRate", 0),  # trains nothing
        ("learningRate", 1.5),
        ("loraRank", 0),
        ("loraRank", 65),
        ("loraAlpha", 0),
        ("resolution", 1000),  # not a multiple of 64
        ("batchSize", 0),
        ("captionDropout", 1.1),
        ("optimizer", "sgd"),
        ("gpus", 0),
        ("gpus", 9),
        ("backoffLimit", -1),
        ("activeDeadlineSeconds", 10),
        ("queueName", "Not_A_Label"),
        ("output", "gs://bucket/prefix"),
        ("baseModel", "not a repo id"),
        ("seed", -1),
        ("samplePrompts", ["p"] * 9),
    ],
)
def test_out_of_range_fields_are_rejected_naming_the_field(field, value):
    with pytest.raises(InvalidSpec) as error:
        parse_spec({"data": DATA, field: value})
    assert str(error.value).startswith(f"spec.{field}")


@pytest.mark.parametrize(
    "data",
    ["ftp://example.com/a.zip", "example.com/a.zip", "https://", "s3://bucket/with space.zip"],
)
def test_data_must_be_an_https_http_or_s3_url(data):
    with pytest.raises(InvalidSpec, match=r"^spec\.data"):
        parse_spec({"data": data})


def test_missing_data_is_rejected():
    with pytest.raises(InvalidSpec, match=r"spec\.data: Field required"):
        parse_spec({"steps": 1000})


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError, match="stepz"):
        LoRATrainingJobSpec.model_validate({"data": DATA, "stepz": 10})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 500),
        ("steps", 4000),
        ("learningRate", 0.00001),
        ("learningRate", 1),
        ("loraRank", 1),
        ("loraRank", 64),
    ],
)
def test_the_hosted_range_ends_are_accepted(field, value):
    assert parse_spec({"data": DATA, field: value})


@pytest.mark.parametrize(
    ("optimizer", "expected"), [("adamw", 0.0004), ("adamw8bit", 0.0004), ("prodigy", 1.0)]
)
def test_an_unset_learning_rate_is_the_optimizers_own(optimizer, expected):
    spec = parse_spec({"data": DATA, "optimizer": optimizer})
    assert spec.learning_rate is None
    assert spec.effective_learning_rate == expected
    given = parse_spec({"data": DATA, "optimizer": optimizer, "learningRate": 0.5})
    assert given.effective_learning_rate == 0.5


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://169.254.169.254/latest/meta-data", True),
        ("https://user@169.254.1.2:8443/x", True),
        ("http://[fe80::1]/hook", True),
        ("http://[FE80::abcd]:80/hook", True),
        ("https://hooks.example/169.254.169.254", False),
        ("http://10.0.0.5/hook", False),  # the operator's allow-list decides, not admission
        ("http://[fd00::1]/hook", False),
    ],
)
def test_a_literal_link_local_webhook_is_refused_alike_by_the_model_and_the_crd_rule(url, refused):
    # The CEL rule's regular expression, its string escapes undone.
    assert bool(re.search(WEBHOOK_LINK_LOCAL_PATTERN.replace("\\\\", "\\"), url)) is refused
    if refused:
        with pytest.raises(ValidationError, match=WEBHOOK_LINK_LOCAL):
            LoRATrainingJobSpec(data="https://x/a.zip", webhook=url)
    else:
        assert LoRATrainingJobSpec(data="https://x/a.zip", webhook=url).webhook == url


@pytest.mark.parametrize("prompts", [None, []])
def test_samples_while_training_need_prompts_to_render(prompts):
    with pytest.raises(ValidationError, match=SAMPLES_NEED_PROMPTS):
        LoRATrainingJobSpec.model_validate(
            {"data": "https://x/a.zip", "sampleEverySteps": 100, "samplePrompts": prompts}
        )
    spec = {"data": "https://x/a.zip", "sampleEverySteps": 100, "samplePrompts": ["a p3r5on"]}
    assert LoRATrainingJobSpec.model_validate(spec).sample_every_steps == 100
