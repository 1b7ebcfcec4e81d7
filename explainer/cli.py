"""The `explainer` command line: serve, models, explain (subcommands in `COMMANDS`).

Exit codes: 0 ok, 2 bad usage or input, 1 failure. `serve` is the only command that
imports `api` (lazily); add a subcommand by adding an entry to `COMMANDS`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class UsageError(Exception):
    """Bad arguments or input files (exit code 2)."""


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


# ---- serve ----


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-repo", type=Path, help="default: EXPLAINER_MODEL_REPO or the zoo")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn worker processes")
    parser.add_argument(
        "--threads",
        type=int,
        default=16,
        help="threads per worker (at least max_concurrency + max_queue, so that overload "
        "is answered with 503 instead of waiting in gunicorn's queue)",
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
    serve(config, args.host, args.port, args.workers, args.threads)
    return EXIT_OK


# ---- models ----


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repo", type=Path, help="default: EXPLAINER_MODEL_REPO or the zoo")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _repository(path: Path | None, device: str = "cpu", only: str | None = None) -> Any:
    """The model repository, loaded (just the model `only` when given)."""
    from models.repository import ModelRepository, default_repository_path

    root = path or default_repository_path()
    if not root.is_dir():
        raise UsageError(f"model repository {root} is not a directory")
    return ModelRepository(root).load(device, only=None if only is None else [only])


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
        print(f"error: {directory}: {message}", file=sys.stderr)
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
    parser.add_argument("--out", type=Path, default=Path("explanations"))
    parser.add_argument("--target", default="predicted", help="'predicted', an index or a label")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-repo", type=Path, help="default: EXPLAINER_MODEL_REPO or the zoo")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _read_instances(paths: Sequence[Path]) -> list[Any]:
    """JSON files (a list of instances, `{"instances": [...]}` or one row) and image files."""
    instances: list[Any] = []
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            instances.append(path.read_bytes())
        elif suffix == ".json":
            try:
                data = json.loads(path.read_bytes(), parse_constant=_reject_constant)
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
        Engine,
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

    engine = Engine(device=args.device)
    handle = _repository(args.model_repo, str(engine.device), args.model).get(args.model)
    supported = available_methods(handle)
    methods = check_methods(handle, args.methods or [m for m in METHODS if m in supported])
    target = _target(args.target)
    resolve_target(handle, target)
    inputs = handle.decode(_read_instances(args.inputs))
    options = ExplainOptions()
    results = explain(handle, inputs, methods, target, options, args.seed, engine)
    args.out.mkdir(parents=True, exist_ok=True)
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
        "--resume", action="store_true", help="continue the unfinished audit held in --out"
    )
    parser.add_argument("--segment-by", metavar="COLUMN", help="a feature or an extra column")
    parser.add_argument("--target", help="default: the model's adverse class, else 'predicted'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--options",
        default="{}",
        help='method options as JSON, e.g. \'{"lime": {"num_samples": 500}}\'',
    )
    parser.add_argument("--chunk-size", type=int, default=64, help="rows per checkpoint")
    parser.add_argument("--model-repo", type=Path, help="default: EXPLAINER_MODEL_REPO or the zoo")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")


def _audit_spec(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from explainer.audit import AuditSpec

    try:
        return AuditSpec.model_validate(
            {
                "model": args.model,
                "methods": args.methods,
                "target": None if args.target is None else _target(args.target),
                "options": json.loads(args.options, parse_constant=_reject_constant),
                "seed": args.seed,
                "segment_by": args.segment_by,
                "chunk_size": args.chunk_size,
            }
        )
    except (ValueError, ValidationError) as exc:
        raise UsageError(f"bad audit options: {exc}") from None


def _audit_job(
    args: argparse.Namespace, store: Any, handle: Any, engine: Any, spec: Any, worker: str
) -> Any:
    """The job to run: a new one, or (with --resume) the unfinished one in --out."""
    from explainer.audit import rehearse, validate
    from explainer.audit.io import read_file

    if not args.data.is_file():
        raise UsageError(f"{args.data}: no such file")
    tabular = handle.spec.tabular
    numeric = [] if tabular is None else tabular.numeric_features
    rows = read_file(args.data, numeric=numeric)  # a CSV's numbers in those columns, as numbers
    existing = store.jobs_of(AUDIT_OWNER)
    if not existing:
        if args.resume:
            raise UsageError(f"{args.out} holds no audit to resume")
        validate(handle, spec, rows)
        rehearse(handle, engine, spec, rows[0])
        job, _ = store.submit(AUDIT_OWNER, handle.name, spec.model_dump(mode="json"), rows)
        return store.claim(job.id, worker)
    job = existing[-1]
    if not args.resume:
        raise UsageError(f"{args.out} already holds an audit: pass --resume or another --out")
    if job.request != spec.model_dump(mode="json") or store.rows(job.id) != rows:
        raise UsageError("--resume needs the same model, data and options as the first run")
    return job if job.status == "completed" else store.claim(job.id, worker)


def _audit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from explainer import Engine
    from explainer.audit import AuditStore, LocalExecutor, audit_report, run_job
    from explainer.audit.io import RESULT_FORMATS, export_texts, flat_columns
    from explainer.audit.runner import ChunkExecutor
    from explainer.audit.worker import worker_id
    from models.repository import default_repository_path

    spec = _audit_spec(args)
    engine = Engine(device=args.device)
    handle = _repository(args.model_repo, str(engine.device), args.model).get(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    store = AuditStore(f"sqlite:///{args.out / 'audit.db'}").create_tables()
    worker = worker_id()
    job = _audit_job(args, store, handle, engine, spec, worker)
    execute: ChunkExecutor = LocalExecutor(handle, engine)
    if args.engine == "local":
        engine.tune(handle)  # as the API does at load
    else:
        from explainer.audit.ray_engine import RayExecutor

        execute = RayExecutor(args.model_repo or default_repository_path(), handle.name)
    if job.status != "completed":
        with tqdm(total=job.total, unit="row", desc=f"audit {handle.name}") as bar:

            def progress(done: int, _total: int) -> None:
                bar.update(done - bar.n)

            job = run_job(store, job, worker, execute, progress)
    if job.status != "completed":
        print(f"explainer: audit {job.status}: {job.error or ''}", file=sys.stderr)
        return EXIT_FAILURE
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
    if job.failed:
        print(
            f"explainer: {job.failed} of {job.total} rows not explained (their model outputs"
            " were NaN or infinite): see the report's 'Rows not explained'",
            file=sys.stderr,
        )
    print(args.out / "report.html")
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "serve": Command("run the HTTP API under gunicorn", _serve_arguments, _serve),
    "models": Command("list the models of a repository", _models_arguments, _models),
    "explain": Command("explain instances, writing JSON and PNGs", _explain_arguments, _explain),
    "audit": Command("explain a data set: results, report, resumable", _audit_arguments, _audit),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explainer", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_arguments(subparsers.add_parser(name, help=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, map errors to exit codes."""
    from models.errors import ServiceError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except UsageError as exc:
        print(f"explainer: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        print(f"explainer: error: {exc.detail}", file=sys.stderr)
        for item in exc.errors:
            print(f"  at {'.'.join(map(str, item.loc))}: {item.msg}", file=sys.stderr)
        return EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:  # the last resort: one line, no traceback
        print(f"explainer: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
