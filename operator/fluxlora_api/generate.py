"""`fluxlora-crd` (run by `make crds`): writes the CRD and the API reference page generated from
the models."""

import argparse
import sys
from pathlib import Path

from fluxlora_api.api_docs import render_api_docs
from fluxlora_api.crd import CRD_FILE, render_crd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the LoRATrainingJob CRD.")
    parser.add_argument("directories", nargs="*", type=Path, help="write CRD_FILE into each")
    parser.add_argument("--reference", type=Path, help="also write the markdown field reference")
    args = parser.parse_args(argv)
    text = render_crd()
    if not args.directories:
        sys.stdout.write(text)
    for directory in args.directories:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CRD_FILE).write_text(text)
    if args.reference:
        args.reference.write_text(render_api_docs())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
