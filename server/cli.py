"""The `ragblend` command: serve the API, ask a one-off question, prepare the model."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from engine.events import FinishEvent, TokenEvent
from engine.registry import create_engine
from engine.sampling import SamplingParams
from server.logging_json import configure_logging
from server.settings import Settings

app = typer.Typer(help="ragblend: RAG serving with reusable chunk KV caches.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default from RAGBLEND_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default from RAGBLEND_PORT)")] = None,
) -> None:
    """Start the HTTP server on the configured model."""
    import uvicorn

    from server.app import create_app

    settings = Settings()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings.model_copy(update=overrides)
    configure_logging(settings.log_level, settings.log_format)
    api = create_app(settings)
    if settings.metrics_port is not None:
        from server.metrics_listener import start_metrics_listener

        host = settings.metrics_host or settings.host
        start_metrics_listener(api.state.services.metrics, host, settings.metrics_port)
    # Our handlers log every request (JSON, with its id): uvicorn keeps its loggers but not its config.
    uvicorn.run(api, host=settings.host, port=settings.port, log_config=None, access_log=False)


@app.command("hash-key")
def hash_key_command() -> None:
    """Read an API key on standard input and print the SHA-256 to configure in RAGBLEND_API_KEYS."""
    from server.api_keys import hash_key

    key = sys.stdin.readline().strip()
    if not key:
        raise typer.BadParameter("give the key on standard input")
    typer.echo(hash_key(key))


@app.command()
def prepare() -> None:
    """Make the model ready (convert the embedded model once) and print its directory."""
    logging.basicConfig(level=logging.INFO)
    typer.echo(Settings().model_dir())


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    doc: Annotated[list[Path] | None, typer.Option("--doc", help="a document file (repeatable)")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    seed: Annotated[int | None, typer.Option()] = None,
    system: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Answer QUESTION from the given documents in this process, streaming the answer."""
    documents = []
    for path in doc or []:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint="--doc")
        documents.append(path.read_text(encoding="utf-8", errors="replace"))
    settings = Settings()
    engine = create_engine(settings.engine, settings.engine_config())
    prompt = engine.build_prompt(question, documents or None, system)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    for event in engine.generate(prompt, params):
        if isinstance(event, TokenEvent):
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, FinishEvent):
            sys.stdout.write("\n")
            typer.echo(
                f"[{event.prompt_tokens} prompt + {event.completion_tokens} new tokens, "
                f"TTFT {event.ttft_ms:.0f} ms, total {event.total_ms:.0f} ms, {event.finish_reason}]",
                err=True,
            )


if __name__ == "__main__":
    app()


bench_app = typer.Typer(help="Benchmarks that drive a server (run from a source checkout).")
app.add_typer(bench_app, name="bench")


@bench_app.command(
    "load",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def bench_load(ctx: typer.Context) -> None:
    """Load test: request rates rising until the latency SLO breaks, per blend mode (bench/load.py;
    every option is passed through: `ragblend bench load --help` lists them)."""
    if (Path.cwd() / "bench" / "load.py").is_file() and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # the checkout we run in
    try:
        from bench.load import main as load_main
    except ImportError:
        typer.echo(
            "ragblend bench load runs from a source checkout (the bench/ folder is not installed): "
            "run it from the repository root, or use `python -m bench.load` there",
            err=True,
        )
        raise typer.Exit(2) from None
    load_main(list(ctx.args))
