"""``python -m backoffice seed [--reset]`` | ``python -m backoffice serve [--reset]``."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from backoffice.settings import BackofficeSettings


def _seed(settings: BackofficeSettings, reset: bool, quiet_if_present: bool = False) -> None:
    from backoffice.db import engine_from_settings, make_session_factory
    from backoffice.demo_data import seed
    from backoffice.timeutil import utcnow

    engine = engine_from_settings(settings)
    try:
        seeded = seed(engine, make_session_factory(engine), utcnow(), reset=reset)
    finally:
        engine.dispose()
    if seeded:
        print(f"Demo data written to {engine.url.render_as_string(hide_password=True)} (see backoffice/DEMO.md).")
    elif not quiet_if_present:
        print("The database already has orders; nothing written (use --reset to start over).")


def _serve(settings: BackofficeSettings, reset: bool) -> None:
    from backoffice.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _seed(settings, reset, quiet_if_present=True)
    app = create_app(settings)
    print(f"«Дарим» back office on http://{settings.host}:{settings.port} (OpenAPI: /openapi.json)", flush=True)
    app.run(host=settings.host, port=settings.port, access_log=False, motd=False, workers=1)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backoffice", description="«Дарим» back office")
    commands = parser.add_subparsers(dest="command", required=True)
    seed_cmd = commands.add_parser("seed", help="fill the database with the demo cases (backoffice/DEMO.md)")
    seed_cmd.add_argument("--reset", action="store_true", help="drop the back-office tables first")
    serve_cmd = commands.add_parser("serve", help="run the HTTP API (seeds an empty database first)")
    serve_cmd.add_argument("--reset", action="store_true", help="re-seed the demo data from scratch first")
    args = parser.parse_args(argv)

    settings = BackofficeSettings.from_env()
    if args.command == "seed":
        _seed(settings, args.reset)
    else:
        _serve(settings, args.reset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
