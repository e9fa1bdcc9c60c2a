"""`fluxlora-trainer`: the trainer container's command.

fluxlora-trainer dataset inspect <zip-or-url> [--trigger-word W | --no-trigger-word]
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from fluxlora_api.contract import (
    CONFIG_ENV,
    TERMINATION_MESSAGE_PATH,
    ExitCode,
    TrainingConfig,
    TrainingResult,
)
from fluxlora_api.limits import DatasetLimits
from fluxlora_api.spec import DEFAULT_TRIGGER_WORD
from fluxlora_trainer import stopping
from fluxlora_trainer.collector import paused_collector
from fluxlora_trainer.dataset import (
    OPENED_DATASET,
    RECOMMENDED_IMAGES,
    load_dataset,
    open_dataset,
    open_training_dataset,
    save_dataset,
)
from fluxlora_trainer.errors import BadInput, Stopped
from fluxlora_trainer.libraries import leave_out_unused


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


def _read_config(path: str | None) -> TrainingConfig:
    """From --config, else from the environment variable the Job sets."""
    if path:
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise BadInput(f"config: cannot read {path}: {error.strerror}") from None
    elif os.environ.get(CONFIG_ENV):
        text = os.environ[CONFIG_ENV]
    else:
        raise BadInput(f"config: give --config FILE or set {CONFIG_ENV}")
    try:
        return TrainingConfig.model_validate_json(text)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise BadInput(f"config: {problems}") from None


def _report(result: TrainingResult, result_file: str, main: bool = True) -> None:
    """The result on stdout, and in the termination message where there is one (rank 0's)."""
    if not main:
        return
    message = result.to_termination_message()  # always fits, as whole JSON
    print(message)
    path = Path(result_file)
    if path.parent.is_dir():
        try:
            path.write_text(message)
        except OSError as error:
            logging.getLogger(__name__).warning("cannot write %s: %s", path, error)


def _train_ranks(args: argparse.Namespace, processes: int) -> int:
    """One rank per GPU, each running `train` again in the same workdir; their exit tells the
    pod's. The dataset is opened first, here: each rank imports the training libraries and
    joins the others before it trains (many seconds on a GPU node), and bad input ends the
    run before any of that; the ranks take the opened dataset from the workdir."""
    from fluxlora_trainer.ranks import launch

    with _workdir(args.workdir) as workdir:
        dataset = open_training_dataset(
            _read_config(args.config), workdir, DatasetLimits.from_env()
        )
        save_dataset(dataset, workdir / OPENED_DATASET)
        command = ["train", "--result-file", args.result_file, "--workdir", str(workdir)]
        command += ["--config", args.config] if args.config else []
        failed = launch(command, processes)  # Stopped, at SIGTERM: the ranks are stopped too
    if not failed:
        return ExitCode.SUCCESS
    if ExitCode.BAD_INPUT in failed.values():
        return ExitCode.BAD_INPUT  # rank 0 has reported why (every rank meets the same input)
    # A rank that crashed (a signal, an unexpected code) is the cause; the others' errors are
    # its consequence (their peer went away). Otherwise rank 0 has reported why.
    crashed = {rank: code for rank, code in failed.items() if code != ExitCode.RETRYABLE}
    if not crashed and 0 in failed:
        return ExitCode.RETRYABLE
    rank, code = min((crashed or failed).items())
    ended = f"signal {-code}" if code < 0 else f"exit code {code}"
    error = f"rank {rank} of {processes} ended with {ended}; the other ranks were stopped"
    logging.getLogger(__name__).error("%s", error)
    _report(TrainingResult(error=error), args.result_file)
    return ExitCode.RETRYABLE


def _train(args: argparse.Namespace) -> int:
    # Rank 0 speaks for the pod: the others neither report progress nor write the result.
    main = os.environ.get("RANK", "0") == "0"
    reporter = None
    try:
        # Inside the try: a SIGTERM may come while torch is still being imported.
        with paused_collector():
            from fluxlora_trainer.ranks import launched, this_process, wanted_processes

        processes = wanted_processes()
        if processes > 1 and not launched():
            return _train_ranks(args, processes)
        config = _read_config(args.config)
        ranks = this_process()
        with _workdir(args.workdir) as workdir:
            # The dataset is checked before the training libraries load (seconds, more on a
            # GPU node): bad input ends at once. Ranks have it from their launcher.
            opened = workdir / OPENED_DATASET
            if launched() and opened.is_file():
                dataset = load_dataset(opened)
            elif ranks.world == 1:
                dataset = open_training_dataset(config, workdir, DatasetLimits.from_env())
            else:  # ranks another launcher started: rank 0 opens it for all (run.py)
                dataset = None
            leave_out_unused(config)
            with paused_collector():
                from fluxlora_trainer.progress import ProgressReporter, ProgressTarget
                from fluxlora_trainer.run import run_training

            reporter = ProgressReporter(ProgressTarget.from_environment() if main else None)
            result = run_training(config, workdir, reporter, ranks, reporter.snapshot, dataset)
        reporter.close()
    except BadInput as error:
        logging.getLogger(__name__).error("bad input: %s", error)
        _report(TrainingResult(error=str(error)), args.result_file, main)
        return ExitCode.BAD_INPUT
    except Stopped as error:  # a retry resumes from the last checkpoint
        if reporter is not None:
            reporter.flush()  # the step it stopped at (where the retry goes on) and snapshots
        _exit_stopped(error, args.result_file, main)
    except Exception as error:  # anything else may pass on a retry (OOM, node, network)
        stopped = _stop_behind(error)
        if stopped is not None:  # SIGTERM during a library's lazy import, which wraps it
            _exit_stopped(stopped, args.result_file, main)
        logging.getLogger(__name__).exception("training failed")
        _report(TrainingResult(error=f"{type(error).__name__}: {error}"), args.result_file, main)
        return ExitCode.RETRYABLE
    _report(result, args.result_file, main)
    return ExitCode.SUCCESS


@contextmanager
def _workdir(given: str | None) -> Iterator[Path]:
    """--workdir, else a temporary folder removed afterwards."""
    if given:
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="fluxlora-run-") as folder:
        yield Path(folder)


def _stop_behind(error: BaseException) -> Stopped | None:
    """The Stopped that `error` wraps, if any (diffusers re-raises what stops an import as a
    RuntimeError whose cause it is)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, Stopped):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _exit_stopped(error: Stopped, result_file: str, main: bool) -> NoReturn:
    logging.getLogger(__name__).warning("%s", error)
    _report(TrainingResult(error=str(error)), result_file, main)
    # Exit now: torch's threads, cut off mid-step, can crash the interpreter's teardown
    # (SIGSEGV seen), and the pod's exit code must say "retry", not "crashed".
    _exit_now(ExitCode.RETRYABLE)


def _exit_now(code: int) -> NoReturn:
    """Out, with the streams flushed but without the interpreter's teardown of torch and the
    other libraries (a second, which a pod's end waits for): what must reach the disk or the
    network has (results, checkpoints and uploads are waited for, progress flushed)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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

    train = commands.add_parser("train", help="run one training, as the Job's container does")
    train.add_argument("--config", help=f"training config JSON (default: ${CONFIG_ENV})")
    train.add_argument("--workdir", help="scratch directory (default: a temporary one)")
    train.add_argument(
        "--result-file",
        default=TERMINATION_MESSAGE_PATH,
        help="where the result JSON goes besides stdout (default: the termination message)",
    )
    train.set_defaults(run=_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    stopping.install()
    return int(args.run(args))


def entry() -> NoReturn:
    """The `fluxlora-trainer` command (and each rank's `python -m fluxlora_trainer.cli`): main,
    then the first part of a normal exit (the background pools finish what they were given: a
    checkpoint upload, a last progress report), then out without the interpreter's teardown."""
    code = main()
    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter's exit runs first
    _exit_now(code)


if __name__ == "__main__":
    entry()
