"""What the web page reads: runs with their progress, one run with its snapshots as download
URLs (only files in the run's own folder), and the stored loss curve."""

import jsonschema

from fluxlora_gateway.openapi import openapi_document
from fluxlora_gateway.runs import (
    loss_csv_url,
    own_snapshot_files,
    parse_loss_csv,
    run_details,
    runs,
)

BASE = "https://gw.example"
UID = "0b9b7f0e-2f7e-4c55-9d55-3c1e4c1c0001"
FOLDER = f"s3://loras/team-a/portrait-{UID}"


def resource(phase: str = "processing", **status) -> dict:
    return {
        "metadata": {
            "uid": UID,
            "name": "portrait",
            "namespace": "team-a",
            "creationTimestamp": "2026-12-05T10:00:00Z",
        },
        "spec": {
            "steps": 1000,
            "loraRank": 16,
            "samplePrompts": ["a p3r5on", "p3r5on at sea"],
            "sampleEverySteps": 250,
            "output": "s3://loras",
        },
        "status": {
            "phase": phase,
            "progress": {"step": 300, "totalSteps": 1000, "loss": 0.41, "etaSeconds": 70},
            "snapshots": [
                {
                    "step": 250,
                    "loss": 0.45,
                    "files": [],
                    "samples": [
                        f"{FOLDER}/sample_0-step-000250.png",
                        "s3://loras/team-b/other-run/sample_1-step-000250.png",  # not its own
                    ],
                }
            ],
            **status,
        },
    }


def test_a_run_lists_its_snapshots_as_download_urls_of_its_own_files_only():
    details = run_details(resource(), BASE)
    assert details.step == 300 and details.eta_seconds == 70 and details.status == "processing"
    (snapshot,) = details.snapshots
    assert snapshot.samples == [f"{BASE}/api/v3/predictions/{UID}/outputs/sample_0-step-000250.png"]
    assert own_snapshot_files(resource()) == [f"{FOLDER}/sample_0-step-000250.png"]
    assert details.outputs == []  # not completed yet
    # The answer is what the OpenAPI document says it is.
    document = openapi_document(BASE)
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/RunDetails", "components": document["components"]}
    )
    validator.validate(details.model_dump(mode="json"))


def test_the_loss_curve_is_read_from_the_runs_folder_and_bad_rows_are_skipped():
    assert loss_csv_url(resource()) == f"{FOLDER}/loss.csv"
    assert loss_csv_url(resource(snapshots=[])) is None  # nothing stored yet
    text = (
        "step,loss,smoothed_loss,elapsed_seconds\n1,0.5,0.5,0.1\n2,nan,0.4,0.2\nx,1,1,1\n"
        "3,0.3,0.45,0.3\n"
    )
    assert [(p.step, p.loss) for p in parse_loss_csv(text).points] == [(1, 0.5), (3, 0.3)]


def test_runs_are_listed_newest_first_and_filtered_by_status():
    older = resource("completed")
    newer = resource("processing")
    newer["metadata"] = {**newer["metadata"], "uid": "u-2", "name": "later",
                         "creationTimestamp": "2026-12-05T11:00:00Z"}  # fmt: skip
    assert [run.name for run in runs([older, newer], None).items] == ["later", "portrait"]
    assert [run.name for run in runs([older, newer], "completed").items] == ["portrait"]
