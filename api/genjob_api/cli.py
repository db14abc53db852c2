"""Gateway sub-commands of `genjob`: `api`, `up`, `demo`, `generate`, `queues`, `dlq`, `apikey`.

Light at import (only argparse wiring); fastapi, uvicorn and httpx load inside each command.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from genjob.settings import GenjobSettings


def _api(args: argparse.Namespace, settings: GenjobSettings) -> int:
    import uvicorn

    from genjob.logs import configure_logging
    from genjob_api.auth import ApiKeyStore, KeysFileError
    from genjob_api.main import create_app

    try:  # the lifespan would load it too, but fail with a traceback
        ApiKeyStore(settings.api.api_keys_file)
    except KeysFileError as exc:
        print(f"genjob api: {exc}\nFix api.api_keys_file (GENJOB_API__API_KEYS_FILE).", file=sys.stderr)
        return 2
    configure_logging(settings, "api")
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
    )
    return 0


def _client(args: argparse.Namespace) -> Any:
    from genjob_api.client import GatewayClient, resolve_key

    return GatewayClient(args.url, resolve_key(args.api_key))


def _bar(step: int, total: int, status: str, width: int = 30) -> str:
    if not total:
        return f"\r{status}...{' ' * (width + 10)}"
    filled = int(width * step / total)
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{total} {status:<10}"


def generate_image(client: Any, body: dict[str, Any], output: Path, progress: bool = True) -> dict[str, Any]:
    """Submit, follow the event stream with a progress bar, save image(s); return the final job."""
    from genjob_api.client import GatewayError

    job = client.submit(body)
    out = sys.stderr
    wait = job.get("estimatedWaitSeconds")
    print(
        f"submitted {job['id']} (tier {job['tier']}, queue position {job.get('queuePosition')}, "
        f"estimated wait {wait}s)",
        file=out,
    )
    final: dict[str, Any] | None = None
    for event, data in client.events(job["id"]):
        if event == "progress" and progress:
            out.write(_bar(data["step"], data["total"], "running"))
        elif event in ("status", "succeeded", "failed", "cancelled"):
            p = data.get("progress") or {}
            if progress:
                out.write(_bar(p.get("step", 0), p.get("total", 0), data["status"]))
            if event != "status":
                final = data
        out.flush()
    if progress:
        out.write("\n")
    final = final or client.get(job["id"])
    if final["status"] != "succeeded":
        raise GatewayError(
            0,
            final["status"],
            f"generation {final['status']}: {final.get('reason')} {final.get('message') or ''}",
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for image in final["images"]:
        path = output if image["index"] == 0 else output.with_stem(f"{output.stem}-{image['index']}")
        path.write_bytes(client.image(final["id"], image["index"]))
        paths.append(path)
    final["savedTo"] = [str(p.resolve()) for p in paths]
    return final


def _request_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": args.prompt}
    for name, key in (
        ("width", "width"),
        ("height", "height"),
        ("steps", "steps"),
        ("seed", "seed"),
        ("num_images", "numImages"),
        ("model", "model"),
        ("negative_prompt", "negativePrompt"),
    ):
        value = getattr(args, name, None)
        if value is not None:
            body[key] = value
    return body


def _generate(args: argparse.Namespace, settings: GenjobSettings) -> int:
    from genjob_api.client import GatewayError

    try:
        with _client(args) as client:
            final = generate_image(client, _request_body(args), Path(args.output), not args.quiet)
    except GatewayError as exc:
        print(f"genjob generate: {exc}", file=sys.stderr)
        return 1
    for path in final["savedTo"]:
        print(path)
    return 0


def _queues(args: argparse.Namespace, settings: GenjobSettings) -> int:
    from genjob_api.client import GatewayError

    try:
        with _client(args) as client:
            data = client.queues()
    except GatewayError as exc:
        print(f"genjob queues: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"{'TIER':<12}{'PENDING':>8}{'IN-FLIGHT':>10}{'DELAYED':>8}{'DEAD':>6}{'OLDEST(s)':>10}{'WAIT(s)':>9}"
    )
    for t in data["tiers"]:
        print(
            f"{t['tier']:<12}{t['pending']:>8}{t['inFlight']:>10}{t['delayed']:>8}{t['deadLettered']:>6}"
            f"{t['oldestPendingAgeSeconds']:>10.1f}{t['estimatedWaitSeconds']:>9.1f}"
        )
    print(f"active workers: {data['workers']}")
    return 0


def _dlq(args: argparse.Namespace, settings: GenjobSettings) -> int:
    from genjob_api.client import GatewayError

    try:
        with _client(args) as client:
            if args.dlq_command == "redrive":
                for job_id in args.ids:
                    client.redrive(job_id)
                    print(f"redriven {job_id}")
                return 0
            for entry in client.dead_letters(args.tier):
                for job_id in entry["ids"]:
                    print(f"{entry['tier']}\t{job_id}")
    except GatewayError as exc:
        print(f"genjob dlq: {exc}", file=sys.stderr)
        return 1
    return 0


def _apikey(args: argparse.Namespace, settings: GenjobSettings) -> int:
    from genjob_api.auth import entry_json, hash_key, new_key

    if args.apikey_command == "hash":
        key = args.key if args.key else sys.stdin.readline().strip()
        print(hash_key(key))
        return 0
    key = new_key()
    print(f"key (shown once): {key}", file=sys.stderr)
    print(key)
    print(entry_json(key, args.tenant, args.tier, args.admin, args.id))
    return 0


def _stack(args: argparse.Namespace, settings: GenjobSettings, stream_logs: bool) -> Any:
    from genjob_api.stack import LocalStack

    return LocalStack(settings, workers=args.workers, port=args.port, tier=args.tier, stream_logs=stream_logs)


def _up(args: argparse.Namespace, settings: GenjobSettings) -> int:
    stack = _stack(args, settings, stream_logs=True)
    stopping = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    # SIGINT too, explicitly: a shell starts background jobs with SIGINT ignored, and Python then
    # keeps it ignored (`genjob up &` in a script, CI runners), so Ctrl-C or kill -INT did nothing.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        print(
            '[genjob] try: genjob generate "a red fox" -o fox.png   (API key in .genjob/dev-api-key)\n'
            "[genjob] Ctrl-C stops everything",
            flush=True,
        )
        while all(c.process.poll() is None for c in stack.children):
            time.sleep(0.5)
        dead = [c.name for c in stack.children if c.process.poll() is not None]
        print(f"[genjob] {', '.join(dead)} exited; stopping", flush=True)
        return 1
    except KeyboardInterrupt:
        print("\n[genjob] stopping (gateway, then workers, then Redis)", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"[genjob] {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()


def _demo(args: argparse.Namespace, settings: GenjobSettings) -> int:
    from genjob_api.client import GatewayClient, GatewayError

    stack = _stack(args, settings, stream_logs=False)
    started = time.monotonic()
    died: list[str] = []

    def on_exit(child: Any) -> None:  # a dead worker would leave the job queued: stop waiting
        died.append(f"{child.name} exited with {child.process.returncode}{stack.tail(child)}")
        os.kill(os.getpid(), signal.SIGINT)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it (see _up)
    try:
        stack.start()
        stack.watch(on_exit)
        body = _request_body(args)
        with GatewayClient(stack.url, stack.api_key) as client:
            final = generate_image(client, body, Path(args.output), progress=True)
    except (GatewayError, RuntimeError) as exc:
        print(f"[genjob] demo failed: {exc}\n[genjob] logs: {stack.state_dir / 'logs'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if died:
            print(f"\n[genjob] demo failed: {died[0]}", file=sys.stderr)
            return 1
        return 130
    finally:
        stack.stop(log=lambda _m: None)
    print(
        f"[genjob] done in {time.monotonic() - started:.1f}s: prompt {args.prompt!r}, "
        f"seed {final.get('seed')}, through gateway -> Redis -> worker -> result store"
    )
    for path in final["savedTo"]:
        print(f"[genjob] image: {path}")
    return 0


def _add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url", default=os.environ.get("GENJOB_API_URL", "http://127.0.0.1:8000"), help="gateway URL"
    )
    p.add_argument(
        "--api-key", default=None, help="API key (default: $GENJOB_API_KEY, then .genjob/dev-api-key)"
    )


def _add_generation_args(
    p: argparse.ArgumentParser, size: int | None = None, steps: int | None = None
) -> None:
    p.add_argument("prompt", help="text prompt")
    p.add_argument("-o", "--output", default="out.png", help="where to save the PNG (more images: -1, -2...)")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--width", type=int, default=size, help=f"default: {size or 'the server default'}")
    p.add_argument("--height", type=int, default=size, help=f"default: {size or 'the server default'}")
    p.add_argument("--steps", type=int, default=steps, help=f"default: {steps or 'the server default'}")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--num-images", type=int, default=None)
    p.add_argument("--model", default=None)


def _add_stack_args(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--port", type=int, default=port, help=f"gateway port (default {port})")
    p.add_argument("--tier", default="pro", help="tier of the development API key (default pro)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("api", help="run the REST gateway (uvicorn)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=_api)

    p = subparsers.add_parser("up", help="run a local stack: Redis, gateway, workers (Ctrl-C stops all)")
    _add_stack_args(p, 8000)
    p.set_defaults(func=_up)

    p = subparsers.add_parser(
        "demo", help="one-shot local flow: start the stack, generate one image through the gateway, stop"
    )
    _add_generation_args(p, size=256, steps=20)  # small: the tiny model on a CPU
    _add_stack_args(p, 0)
    p.set_defaults(func=_demo_with_port)

    p = subparsers.add_parser(
        "generate", help="submit a prompt to the gateway, show progress, save the image"
    )
    _add_generation_args(p)
    _add_client_args(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_generate)

    p = subparsers.add_parser("queues", help="queue depths and estimated waits per tier")
    _add_client_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_queues)

    p = subparsers.add_parser("dlq", help="dead-lettered jobs (admin key)")
    dlq = p.add_subparsers(dest="dlq_command", required=True)
    q = dlq.add_parser("list", help="list dead-lettered job ids")
    q.add_argument("--tier", default=None)
    _add_client_args(q)
    q = dlq.add_parser("redrive", help="send dead-lettered jobs back to their queue")
    q.add_argument("ids", nargs="+")
    _add_client_args(q)
    p.set_defaults(func=_dlq)

    p = subparsers.add_parser("apikey", help="API key helpers")
    keys = p.add_subparsers(dest="apikey_command", required=True)
    q = keys.add_parser("hash", help="print the SHA-256 of a key (from the argument or stdin)")
    q.add_argument("key", nargs="?")
    q = keys.add_parser("create", help="make a new key; prints it and its keys-file entry")
    q.add_argument("--tenant", required=True)
    q.add_argument("--tier", required=True)
    q.add_argument("--admin", action="store_true")
    q.add_argument("--id", default=None)
    p.set_defaults(func=_apikey)


def _demo_with_port(args: argparse.Namespace, settings: GenjobSettings) -> int:
    if not args.port:
        from genjob.localredis import free_port

        args.port = free_port()
    return _demo(args, settings)
