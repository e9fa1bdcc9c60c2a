"""`fluxlora-trainer`: the trainer container's command.

fluxlora-trainer dataset inspect <zip-or-url> [--trigger-word W | --no-trigger-word]
"""

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fluxlora_api.contract import ExitCode
from fluxlora_api.spec import DEFAULT_TRIGGER_WORD
from fluxlora_trainer.dataset import RECOMMENDED_IMAGES, open_dataset
from fluxlora_trainer.errors import BadInput
from fluxlora_trainer.limits import DatasetLimits


def _inspect(args: argparse.Namespace) -> int:
    trigger_word = None if args.no_trigger_word else args.trigger_word
    with tempfile.TemporaryDirectory(prefix="fluxlora-inspect-") as workdir:
        try:
            dataset = open_dataset(
                args.source, Path(workdir), trigger_word, DatasetLimits.from_env()
            )
        except BadInput as error:
            print(json.dumps({"error": str(error)}))
            print(f"fluxlora-trainer: {error}", file=sys.stderr)
            return ExitCode.BAD_INPUT
        for sample in dataset.samples:
            line = {
                "image": sample.name,
                "caption": sample.caption,
                "width": sample.width,
                "height": sample.height,
            }
            print(json.dumps(line, ensure_ascii=False))
        for item in dataset.skipped:
            print(json.dumps({"skipped": item.name, "reason": item.reason}, ensure_ascii=False))
    if len(dataset.samples) < RECOMMENDED_IMAGES:
        print(
            f"fluxlora-trainer: only {len(dataset.samples)} usable image(s); "
            f"at least {RECOMMENDED_IMAGES} are recommended",
            file=sys.stderr,
        )
    return ExitCode.SUCCESS


def _tiny_model(args: argparse.Namespace) -> int:
    from fluxlora_trainer.tiny_model import write_tiny_model  # imports torch: only when asked

    write_tiny_model(Path(args.directory), seed=args.seed)
    print(args.directory)
    return ExitCode.SUCCESS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fluxlora-trainer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    dataset = commands.add_parser("dataset", help="check a dataset before submitting it")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", required=True)
    inspect = dataset_commands.add_parser(
        "inspect",
        help="print one JSON line per usable image (image, caption, width, height) and per "
        "skipped file (skipped, reason); exit 65 when the dataset is unusable",
    )
    inspect.add_argument("source", help="a local .zip, or an https/http/s3 URL")
    words = inspect.add_mutually_exclusive_group()
    words.add_argument(
        "--trigger-word",
        default=DEFAULT_TRIGGER_WORD,
        help=f"trigger word, as in spec.triggerWord (default {DEFAULT_TRIGGER_WORD})",
    )
    words.add_argument(
        "--no-trigger-word", action="store_true", help="no trigger word (triggerWord: null)"
    )
    inspect.set_defaults(run=_inspect)

    tiny = commands.add_parser(
        "tiny-model",
        help="write a tiny randomly initialised FLUX pipeline (diffusers layout) for tests",
    )
    tiny.add_argument("directory", help="where to write it (created if missing)")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.set_defaults(run=_tiny_model)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
