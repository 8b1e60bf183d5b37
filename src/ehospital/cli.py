"""The `ehospital` command: serve, demo, migrate, audit verify."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from ehospital.config import Settings, get_settings
from ehospital.db import create_engine, create_sessionmaker, migrate, session_scope
from ehospital.kit.errors import DomainError


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    migrate(settings.resolved_database_url())
    settings.upload_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_sync_formulary(settings))
    if args.workers > 1:
        if not settings.broker_url:
            print(
                f"ehospital: warning: {args.workers} processes without EHOSPITAL_BROKER_URL: live chat "
                "reaches only the sockets of the process that stored a message (others see it on "
                "reconnect or by polling); set EHOSPITAL_BROKER_URL=redis://host:6379/0",
                file=sys.stderr,
            )
        uvicorn.run(
            "ehospital.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            access_log=args.access_log,
            # Open sockets (live chat) get 10 s to close before the process exits.
            timeout_graceful_shutdown=10,
            # Chat frames are a few hundred bytes: compressing each costs more than it saves.
            ws_per_message_deflate=False,
        )
    else:
        from ehospital.main import create_app

        uvicorn.run(
            create_app(settings),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=args.access_log,
            # Open sockets (live chat) get 10 s to close before the process exits.
            timeout_graceful_shutdown=10,
            # Chat frames are a few hundred bytes: compressing each costs more than it saves.
            ws_per_message_deflate=False,
        )
    return 0


async def _sync_formulary(settings: Settings) -> None:
    """The drugs shipped with this version, added to the database before serving."""
    from ehospital.prescriptions.formulary import sync_formulary

    engine = create_engine(settings)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            await sync_formulary(session)
    finally:
        await engine.dispose()


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrate(settings.resolved_database_url(), args.revision)
    print(f"database at {args.revision}")
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from ehospital.demo import DEMO_ACCOUNTS, seed_demo

    if args.walkthrough:
        return _walkthrough(args.url)

    migrate(settings.resolved_database_url())

    async def run() -> bool:
        engine = create_engine(settings)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                return await seed_demo(session)
        finally:
            await engine.dispose()

    created = asyncio.run(run())
    print("Demo hospital " + ("seeded." if created else "already present (nothing changed)."))
    print(f"Sign in at http://{args.host}:{args.port}/ with one of these accounts:")
    width = max(len(a.username) for a in DEMO_ACCOUNTS)
    pw_width = max(len(a.password) for a in DEMO_ACCOUNTS)
    for account in DEMO_ACCOUNTS:
        print(
            f"  {account.role:<15} {account.username:<{width}}  password: "
            f"{account.password:<{pw_width}}  {account.note}"
        )
    return 0


def _walkthrough(url: str | None) -> int:
    from ehospital.walkthrough import WalkthroughError, run

    if not url:
        print("ehospital demo --walkthrough needs --url of a running server with the demo", file=sys.stderr)
        return 2
    try:
        run(url, lambda step: print(json.dumps(step, ensure_ascii=False), flush=True))
    except WalkthroughError as exc:
        print(f"ehospital: walkthrough stopped: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ehospital.audit.anchor import read_anchor
    from ehospital.audit.service import advance_anchor, seal, verify

    migrate(settings.resolved_database_url())
    anchor_path = settings.audit_anchor_path

    async def run() -> dict[str, object]:
        engine = create_engine(settings)
        try:
            factory = create_sessionmaker(engine)
            anchor = read_anchor(anchor_path)  # read before sealing moves it on
            async with session_scope(factory) as session:
                report = await verify(session, anchor)
            if report.ok and not args.no_seal:
                async with session_scope(factory) as session:
                    await seal(session)
                async with session_scope(factory) as session:
                    await advance_anchor(session, anchor_path)
                async with session_scope(factory) as session:
                    report = await verify(session, read_anchor(anchor_path))
            return report.as_dict()
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    print(json.dumps(report, indent=2))
    if not report["ok"]:
        print(
            f"audit trail BROKEN at row {report['broken_at_seq']} (event id {report['broken_event_id']}): "
            f"{report['problem']}",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_rx_verify(args: argparse.Namespace, settings: Settings) -> int:
    from ehospital.prescriptions.service import PrescriptionService
    from ehospital.prescriptions.signing import KeyStore

    migrate(settings.resolved_database_url())

    async def run() -> dict[str, object]:
        engine = create_engine(settings)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                result = await PrescriptionService(session, KeyStore(settings.key_dir)).verify(args.id)
                return result.model_dump()
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(run())
    except DomainError as exc:
        print(f"ehospital: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    if not result["valid"]:
        print(f"prescription {args.id}: signature NOT valid: {result['reason']}", file=sys.stderr)
        return 1
    return 0


def _cmd_rx_history(args: argparse.Namespace, settings: Settings) -> int:
    from ehospital.prescriptions.service import PrescriptionService
    from ehospital.prescriptions.signing import KeyStore

    migrate(settings.resolved_database_url())

    async def run() -> list[dict[str, object]]:
        engine = create_engine(settings)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                return await PrescriptionService(session, KeyStore(settings.key_dir)).history(args.id)
        finally:
            await engine.dispose()

    try:
        steps = asyncio.run(run())
    except DomainError as exc:
        print(f"ehospital: {exc.message}", file=sys.stderr)
        return 1
    for step in steps:
        print(json.dumps(step, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ehospital", description="ehospital internet hospital")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate the database, then serve HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes")
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    serve.set_defaults(func=_cmd_serve)

    demo = sub.add_parser("demo", help="seed the demo hospital once and print its accounts")
    demo.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    demo.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    demo.add_argument(
        "--walkthrough", action="store_true", help="drive the whole care loop through the HTTP API of --url"
    )
    demo.add_argument("--url", help="a running server that has the demo (with --walkthrough)")
    demo.set_defaults(func=_cmd_demo)

    mig = sub.add_parser("migrate", help="upgrade the database schema")
    mig.add_argument("revision", nargs="?", default="head")
    mig.set_defaults(func=_cmd_migrate)

    audit = sub.add_parser("audit", help="the tamper-evident audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain; exit 1 at the first broken link")
    verify.add_argument("--no-seal", action="store_true", help="do not chain pending rows first")
    verify.set_defaults(func=_cmd_audit_verify)

    rx = sub.add_parser("rx", help="prescriptions")
    rx_sub = rx.add_subparsers(dest="rx_command", required=True)
    rx_verify = rx_sub.add_parser(
        "verify", help="check a prescription's signature; exit 1 if it is not valid"
    )
    rx_verify.add_argument("id", type=int, help="prescription id")
    rx_verify.set_defaults(func=_cmd_rx_verify)
    rx_history = rx_sub.add_parser("history", help="who did what, when: one JSON line per step")
    rx_history.add_argument("id", type=int, help="prescription id")
    rx_history.set_defaults(func=_cmd_rx_history)

    from ehospital.vetting.cli import add_parser as add_vet_parser

    add_vet_parser(sub)

    from ehospital.glucose.cli import add_parser as add_cgm_parser

    add_cgm_parser(sub)

    from ehospital.skin.cli import add_parser as add_skin_parser

    add_skin_parser(sub)

    from ehospital.triage.cli import add_parser as add_triage_parser

    add_triage_parser(sub)
    return parser


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return port


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "needs_settings", True):  # a pure command: no database, no settings
        try:
            return int(args.func(args))
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    try:
        settings = get_settings()
        url = settings.resolved_database_url()
        code: int = args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except ValidationError as exc:
        print(f"ehospital: invalid configuration in the environment:\n{exc}", file=sys.stderr)
        return 2
    except ArgumentError as exc:
        print(f"ehospital: EHOSPITAL_DATABASE_URL is not a database URL: {exc}", file=sys.stderr)
        return 2
    except (DBAPIError, OSError) as exc:
        reason = exc.orig if isinstance(exc, DBAPIError) else exc
        print(
            f"ehospital: cannot use the database {_safe_url(url)} or data directory "
            f"{settings.data_dir}: {reason}",
            file=sys.stderr,
        )
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
