"""The prediction history: the key's predictions filtered, newest first, in pages."""

import json

import jsonschema
import pytest

from fluxlora_gateway import hosted
from fluxlora_gateway.history import HistoryQuery, history
from fluxlora_gateway.openapi import openapi_document

BASE = "https://gw.example"


def resource(number: int, phase: str = "created", inference: int = 0) -> dict:
    """The number-th prediction, created `number` minutes after 10:00."""
    return {
        "metadata": {
            "uid": f"u-{number}",
            "name": f"prediction-{number}",
            "namespace": "team-a",
            "creationTimestamp": f"2026-11-24T10:{number:02d}:00Z",
        },
        "spec": {},
        "status": {"phase": phase, "timings": {"inference": inference}},
    }


RESOURCES = [
    resource(1, "completed", 81234),
    resource(2, "failed", 5000),
    resource(3, "processing"),
    resource(4),
]


def ids(page) -> list[str]:
    return [item.id for item in page.items]


def query(**fields) -> HistoryQuery:
    return hosted.parse_body(HistoryQuery, json.dumps(fields).encode())


def test_newest_first_in_pages_with_the_total_of_all_pages():
    first = history(RESOURCES, query(page_size=3), BASE)
    second = history(RESOURCES, query(page=2, page_size=3), BASE)
    assert (first.page, first.total, ids(first)) == (1, 4, ["u-4", "u-3", "u-2"])
    assert (second.page, second.total, ids(second)) == (2, 4, ["u-1"])
    assert ids(history(RESOURCES, query(page=3, page_size=3), BASE)) == []


def test_items_carry_the_execution_time_of_their_timings():
    (done,) = history(RESOURCES, query(status="completed"), BASE).items
    assert done.id == "u-1" and done.executionTime == done.timings.inference == 81234


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": "failed"}, ["u-2"]),
        ({"model": "wavespeed-ai/flux-dev-lora-trainer"}, ["u-4", "u-3", "u-2", "u-1"]),
        ({"model": "someone/else"}, []),
        ({"created_after": "2026-11-24T10:03:00Z"}, ["u-4", "u-3"]),
        ({"created_before": "2026-11-24T10:03:00"}, ["u-2", "u-1"]),  # no zone: UTC
        ({"created_after": "2026-11-24T11:02:00+01:00", "status": "failed"}, ["u-2"]),
    ],
)
def test_filters_narrow_the_list(filters, expected):
    assert ids(history(RESOURCES, query(**filters), BASE)) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"page": 0}, "page: Input should be greater than or equal to 1"),
        ({"page_size": 101}, "page_size: Input should be less than or equal to 100"),
        ({"status": "running"}, "status: Input should be 'created', 'processing'"),
        ({"created_after": "yesterday"}, "created_after: Input should be a valid datetime"),
        ({"sort": "asc"}, "sort: Extra inputs are not permitted"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(fields, message):
    with pytest.raises(hosted.RequestError, match=message):
        query(**fields)


def test_a_page_matches_the_published_schema():
    document = openapi_document(BASE)
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/HistoryResponse", "components": document["components"]}
    )
    page = history(RESOURCES, query(), BASE).model_dump(mode="json")
    validator.validate(hosted.envelope(200, "success", page))
    assert page["items"][0]["executionTime"] == 0 and "urls" in page["items"][0]
