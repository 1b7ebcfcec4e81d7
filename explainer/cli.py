"""The `explainer` command line: serve the HTTP API, list models, explain instances, audit.

Exit codes: 0 ok, 2 bad usage or input, 1 failure, 130 interrupted. `serve` is the only
command that imports `api` (lazily); add a subcommand by adding an entry to `COMMANDS`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

    from explainer.audit.runner import ChunkExecutor

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SEED_HELP = "seed of every random choice, 0 to 4294967295 (default: %(default)s)"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MODEL_REPO_HELP = "default: EXPLAINER_MODEL_REPO or the zoo"


class UsageError(Exception):
    """Bad arguments or input files (exit code 2)."""


class AuditInterrupted(KeyboardInterrupt):
    """Ctrl-C once an audit is stored in --out: `--resume` continues it."""


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _engine(device: str | None) -> Any:
    """An Engine on `--device`; a UsageError for a device unknown to or absent from this
    machine."""
    from explainer import Engine
    from explainer.engine import usable_device

    try:
        chosen = usable_device(device)
    except ValueError as exc:
        raise UsageError(f"--device: {exc}") from None
    return Engine(device=chosen)


def _read_bytes(path: Path) -> bytes:
    """An input file's bytes; a UsageError naming it when it is missing or unreadable."""
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _output_folder(path: Path) -> None:
    """Create the `--out` folder before any work; a UsageError naming it when that fails."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot be created ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path}: the folder is not writable")


# ---- serve ----


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; another than loopback needs API "
        "keys or --insecure)",
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument("--model-repo", metavar="DIR", help=MODEL_REPO_HELP)
    parser.add_argument(
        "--workers", type=int, default=1, help="gunicorn worker processes (default: %(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=16,
        help="threads per worker (default: %(default)s); fewer than max_concurrency + "
        "max_queue + 1 draws a warning: overload then waits in gunicorn's queue instead of "
        "getting 503, and /healthz can wait behind it",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback host without API keys"
    )


def _serve(args: argparse.Namespace) -> int:
    from api.config import ApiConfig, ConfigError
    from api.server import serve

    if args.workers < 1 or args.threads < 1 or not 0 < args.port < 65536:
        raise UsageError("--workers and --threads must be positive and --port in 1..65535")
    overrides = {"model_repo": args.model_repo} if args.model_repo else {}
    try:
        config = ApiConfig.from_env(overrides)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if not config.api_keys and not _is_loopback(args.host) and not args.insecure:
        raise UsageError(
            f"refusing to serve on {args.host} without API keys: set EXPLAINER_API_KEYS "
            "or pass --insecure"
        )
    _warn_few_threads(args.threads, config.max_concurrency, config.max_queue)
    serve(config, args.host, args.port, args.workers, args.threads)
    return EXIT_OK


def _warn_few_threads(threads: int, max_concurrency: int, max_queue: int) -> None:
    """Warn when a worker's threads cannot hold its admitted requests and one for /healthz."""
    needed = max_concurrency + max_queue + 1
    if threads < needed:
        print(
            f"explainer: warning: --threads {threads} is fewer than max_concurrency"
            f" ({max_concurrency}) + max_queue ({max_queue}) + 1 = {needed}: overload waits in"
            " gunicorn's queue instead of getting 503, and /healthz can wait behind it",
            file=sys.stderr,
        )


# ---- models ----


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repo", metavar="DIR", help=MODEL_REPO_HELP)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _repository(path: Path | None, device: str = "cpu", only: str | None = None) -> Any:
    """The model repository, loaded (just the model `only` when given). Its load errors are
    printed by the commands, not logged a second time."""
    from models.repository import ModelRepository, default_repository_path

    root = path or default_repository_path()
    if not root.is_dir():
        raise UsageError(f"model repository {root} is not a directory")
    logger = logging.getLogger("models.repository")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return ModelRepository(root).load(device, only=None if only is None else [only])


def _model(path: Path | None, device: str, name: str) -> Any:
    """The loaded model `name`; an unknown name lists the models that failed to load (their
    model.toml may be the one meant)."""
    from models.errors import ErrorItem, NotFound

    repository = _repository(path, device, name)
    try:
        return repository.get(name)
    except NotFound as exc:
        failed = [ErrorItem((folder,), reason) for folder, reason in repository.errors.items()]
        raise NotFound(exc.detail, failed) from None


def _models(args: argparse.Namespace) -> int:
    from explainer import available_methods

    repository = _repository(args.model_repo)
    rows = []
    for name in repository.names():
        handle = repository.get(name)
        rows.append({**handle.describe(), "methods": available_methods(handle)})
    if args.json:
        print(json.dumps({"models": rows, "errors": repository.errors}, indent=2))
    else:
        for row in rows:
            print(f"{row['name']}\t{row['version']}\t{row['modality']}\t{','.join(row['classes'])}")
    for directory, message in repository.errors.items():
        print(f"error: {directory}: {_one_line(message)}", file=sys.stderr)
    return EXIT_FAILURE if repository.errors else EXIT_OK


# ---- explain ----


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    from explainer.options import ALL_METHODS

    parser.add_argument("model")
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help='a JSON file of instances (a list or {"instances": [...]}) or PNG/JPEG files',
    )
    parser.add_argument(
        "--methods", nargs="+", choices=ALL_METHODS, help="default: the model's five methods"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("explanations"), help="folder (default: %(default)s)"
    )
    parser.add_argument("--target", default="predicted", help="'predicted', an index or a label")
    parser.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    parser.add_argument("--model-repo", metavar="DIR", help=MODEL_REPO_HELP)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _read_instances(paths: Sequence[Path]) -> list[Any]:
    """JSON files (a list of instances, `{"instances": [...]}` or one row) and image files."""
    instances: list[Any] = []
    for path in paths:
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            instances.append(_read_bytes(path))
        elif suffix == ".json":
            try:
                data = json.loads(_read_bytes(path), parse_constant=_reject_constant)
            except ValueError:
                raise UsageError(f"{path}: not valid JSON (NaN and Infinity are refused)") from None
            if isinstance(data, dict) and "instances" in data:
                data = data["instances"]
            instances.extend(data if isinstance(data, list) else [data])
        else:
            raise UsageError(f"{path}: expected a .json, .png, .jpg or .jpeg file")
    return instances


def _target(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def _explain(args: argparse.Namespace) -> int:
    from explainer import (
        METHODS,
        ExplainOptions,
        available_methods,
        check_methods,
        explain,
        resolve_target,
    )
    from explainer.render import (
        bar_chart_png,
        heatmap_png,
        instance_document,
        model_reference,
        provenance,
    )

    engine = _engine(args.device)
    instances = _read_instances(args.inputs)
    _output_folder(args.out)
    handle = _model(args.model_repo, str(engine.device), args.model)
    supported = available_methods(handle)
    methods = check_methods(handle, args.methods or [m for m in METHODS if m in supported])
    target = _target(args.target)
    resolve_target(handle, target)
    inputs = handle.decode(instances)
    options = ExplainOptions()
    results = explain(handle, inputs, methods, target, options, args.seed, engine)
    pixels = inputs.cpu().numpy()
    for i, result in enumerate(results):
        for name, explanation in result.methods.items():
            text = {
                "model": handle.name,
                "version": handle.spec.version,
                "method": name,
                "target": result.target.label,
            }
            if handle.is_image:
                png = heatmap_png(explanation.attributions, image=pixels[i], text=text)
            else:
                png = bar_chart_png(
                    explanation.attributions,
                    handle.feature_names,
                    title=f"{name}: toward {result.target.label}",
                    text=text,
                    magnitude=explanation.magnitude,
                )
            (args.out / f"{i}_{name}.png").write_bytes(png)
    document = {
        "model": model_reference(handle),
        "inputs": [str(path) for path in args.inputs],
        "explanations": [
            instance_document(handle, i, result, lambda i, name: f"{i}_{name}.png")
            for i, result in enumerate(results)
        ],
        "provenance": provenance(
            handle,
            device=str(engine.device),
            seed=args.seed,
            target=target,
            methods=methods,
            options=options,
        ),
    }
    out_file = args.out / "explanation.json"
    out_file.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    print(out_file)
    return EXIT_OK


# ---- audit ----

AUDIT_OWNER = "cli"  # the owner of audits in an --out directory's database


def _audit_arguments(parser: argparse.ArgumentParser) -> None:
    from explainer.options import ALL_METHODS

    parser.add_argument("model")
    parser.add_argument("data", type=Path, help="a CSV, Parquet or JSONL file of rows")
    parser.add_argument(
        "--out", type=Path, required=True, help="directory: audit.db, results.*, report.html"
    )
    parser.add_argument(
        "--methods", nargs="+", choices=ALL_METHODS, help="default: the model's five methods"
    )
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the audit held in --out (unfinished, failed or cancelled)",
    )
    parser.add_argument("--segment-by", metavar="COLUMN", help="a feature or an extra column")
    parser.add_argument("--target", help="default: the model's adverse class, else 'predicted'")
    parser.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    parser.add_argument(
        "--options",
        default="{}",
        help='method options as JSON, e.g. \'{"lime": {"num_samples": 500}}\'',
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=64,
        help="rows per checkpoint, 1 to 1024 (default: %(default)s)",
    )
    parser.add_argument("--model-repo", metavar="DIR", help=MODEL_REPO_HELP)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")


def _audit_spec(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from explainer.audit import AuditSpec

    try:
        options = json.loads(args.options, parse_constant=_reject_constant)
    except ValueError as exc:
        raise UsageError(f"--options is not valid JSON: {exc}") from None
    try:
        return AuditSpec.model_validate(
            {
                "model": args.model,
                "methods": args.methods,
                "target": None if args.target is None else _target(args.target),
                "options": options,
                "seed": args.seed,
                "segment_by": args.segment_by,
                "chunk_size": args.chunk_size,
            }
        )
    except ValidationError as exc:
        raise UsageError(f"bad audit arguments\n{_error_lines(exc)}") from None


def _error_lines(error: ValidationError) -> str:
    """A pydantic error as `  at loc: msg` lines, without input values or URLs."""
    items = error.errors(include_url=False, include_input=False)
    return "\n".join(f"  at {'.'.join(map(str, item['loc']))}: {item['msg']}" for item in items)


def _audit_rows(handle: Any, data: bytes, name: str) -> list[Any]:
    """The data file's rows; a CSV's cells in the model's numeric columns as numbers."""
    from explainer.audit.io import format_of, read_rows

    tabular = handle.spec.tabular
    numeric = [] if tabular is None else tabular.numeric_features
    return read_rows(data, format_of(name), numeric=numeric)


def _audit_job(
    args: argparse.Namespace,
    store: Any,
    handle: Any,
    engine: Any,
    spec: Any,
    rows: list[Any],
    worker: str,
) -> Any:
    """The job to run: a new one, or (with --resume) the one held in --out."""
    existing = store.jobs_of(AUDIT_OWNER)
    if not existing:
        if args.resume:
            raise UsageError(f"{args.out} holds no audit to resume")
        return _new_job(store, handle, engine, spec, rows, worker)
    job = existing[-1]
    if not args.resume:
        raise UsageError(
            f"{args.out} already holds an audit ({job.status}): pass --resume or another --out"
        )
    if job.request != spec.model_dump(mode="json") or store.rows(job.id) != rows:
        raise UsageError("--resume needs the same model, data and options as the first run")
    return _resumed_job(store, job, worker)


def _new_job(store: Any, handle: Any, engine: Any, spec: Any, rows: list[Any], worker: str) -> Any:
    """Check the audit (every row, and the first one explained), submit it and lease it."""
    from explainer.audit import rehearse, validate

    validate(handle, spec, rows)
    rehearse(handle, engine, spec, rows[0])
    job, _ = store.submit(AUDIT_OWNER, handle.name, spec.model_dump(mode="json"), rows)
    return store.claim(job.id, worker)


def _resumed_job(store: Any, job: Any, worker: str) -> Any:
    """A completed job as it is; else the job leased again, a failed or cancelled one first
    queued again with its stored rows kept and its error cleared."""
    from explainer.audit.store import STOPPED

    if job.status == "completed":
        return job
    if job.status in STOPPED:
        print(
            f"explainer: resuming a {job.status} audit: {job.done} of {job.total} rows stored",
            file=sys.stderr,
        )
        store.requeue(job.id, AUDIT_OWNER)
    return store.claim(job.id, worker)


def _audit(args: argparse.Namespace) -> int:
    from explainer.audit import AuditStore
    from explainer.audit.worker import worker_id

    spec = _audit_spec(args)
    engine = _engine(args.device)
    data = _read_bytes(args.data)
    _output_folder(args.out)
    handle = _model(args.model_repo, str(engine.device), args.model)
    rows = _audit_rows(handle, data, args.data.name)
    store = AuditStore(f"sqlite:///{args.out / 'audit.db'}").create_tables()
    worker = worker_id()
    job = _audit_job(args, store, handle, engine, spec, rows, worker)
    try:  # the job is stored from here on: Ctrl-C leaves it to --resume
        job = _run_audit(args, store, job, handle, engine, worker)
        if job.status != "completed":
            print(
                f"explainer: audit {job.status}: {job.error or ''} ({job.done} of {job.total}"
                " rows stored; resume with --resume)",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        _export_audit(args, store, job, handle, spec)
    except KeyboardInterrupt:
        raise AuditInterrupted from None
    if job.failed:
        print(
            f"explainer: {job.failed} of {job.total} rows not explained (their model outputs"
            " were NaN or infinite): see the report's 'Rows not explained'",
            file=sys.stderr,
        )
    print(args.out / "report.html")
    return EXIT_OK


def _run_audit(
    args: argparse.Namespace, store: Any, job: Any, handle: Any, engine: Any, worker: str
) -> Any:
    """Explain the job's rows not stored yet, with a progress bar; the job as stored then.

    The bar starts at the rows already stored (a resumed job's), so that its rate counts
    only the rows explained in this run, and its ETA divides the rows remaining by that.
    """
    from tqdm import tqdm

    from explainer.audit import run_job

    if job.status == "completed":
        return job
    execute = _executor(args, handle, engine)
    bars: list[tqdm[Any]] = []

    def progress(done: int, total: int) -> None:
        if not bars:  # the runner's first call: the rows already stored before this run
            bars.append(tqdm(total=total, initial=done, unit="row", desc=f"audit {handle.name}"))
        bars[0].update(done - bars[0].n)

    try:
        return run_job(store, job, worker, execute, progress)
    finally:
        for bar in bars:
            bar.close()


def _executor(args: argparse.Namespace, handle: Any, engine: Any) -> ChunkExecutor:
    """The local engine, its chunk size tuned as the API does at load; or Ray actors."""
    from explainer.audit import LocalExecutor
    from models.repository import default_repository_path

    if args.engine == "local":
        engine.tune(handle)
        return LocalExecutor(handle, engine)
    from explainer.audit.ray_engine import RayExecutor

    return RayExecutor(args.model_repo or default_repository_path(), handle.name)


def _export_audit(args: argparse.Namespace, store: Any, job: Any, handle: Any, spec: Any) -> None:
    """Write a completed job's results (JSONL, CSV, Parquet) and report into --out."""
    from explainer.audit import audit_report
    from explainer.audit.io import RESULT_FORMATS, export_texts, flat_columns

    classes = list(handle.spec.classes)
    columns = flat_columns(store.result_texts(job.id), classes)  # the job is done: one reading
    for fmt in RESULT_FORMATS:  # streamed from the store: never every document at once
        with (args.out / f"results.{fmt}").open("wb") as file:
            for part in export_texts(lambda: store.result_texts(job.id), fmt, classes, columns):
                file.write(part)
    report = audit_report(
        handle,
        store.results(job.id),
        title=f"Audit of {args.data.name} with {handle.name}",
        status=job.status,
        total=job.total,
        segment_by=spec.segment_by,
    )
    (args.out / "report.html").write_text(report, encoding="utf-8")


COMMANDS: dict[str, Command] = {
    "serve": Command("run the HTTP API under gunicorn", _serve_arguments, _serve),
    "models": Command("list the models of a repository", _models_arguments, _models),
    "explain": Command("explain instances, writing JSON and PNGs", _explain_arguments, _explain),
    "audit": Command("explain a data set: results, report, resumable", _audit_arguments, _audit),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="explainer",
        description=f"Explain PyTorch models. Commands: {', '.join(COMMANDS)}.",
        epilog="exit codes: 0 ok, 1 failure, 2 bad usage or input, 130 interrupted",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_arguments(subparsers.add_parser(name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, map errors to exit codes."""
    from models.errors import ServiceError

    args = build_parser().parse_args(argv)
    try:
        _check_paths(args)
        return COMMANDS[args.command].run(args)
    except UsageError as exc:
        print(f"explainer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        print(f"explainer: error: {_one_line(exc.detail)}", file=sys.stderr)
        for item in exc.errors:
            where = ".".join(map(str, item.loc))
            print(f"  at {where}: {_one_line(item.msg)}", file=sys.stderr)
        return EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAILURE
    except AuditInterrupted:
        print("explainer: interrupted; resume with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("explainer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last resort: one line, no traceback
        print(f"explainer: failed: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE


def _check_paths(args: argparse.Namespace) -> None:
    """`--model-repo` as a Path; an empty one is a UsageError (`Path("")` is the current
    folder, which would be taken for the repository)."""
    repo = getattr(args, "model_repo", None)
    if repo is None:
        return
    if repo == "":
        raise UsageError(
            "--model-repo: the path is empty (leave the option out for EXPLAINER_MODEL_REPO"
            " or the zoo)"
        )
    args.model_repo = Path(repo)


def _one_line(text: str) -> str:
    """`text` with its line breaks and tabs (torch's multi-line errors) as single spaces."""
    return " ".join(text.split())
