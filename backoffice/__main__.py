"""``python -m backoffice seed [--reset]`` | ``python -m backoffice serve [--reset]``."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Dict, List, Optional

from backoffice.settings import DEFAULT_API_TOKEN, BackofficeSettings


def _is_production() -> bool:
    return (os.environ.get(PRODUCTION_VARIABLE) or "").strip().lower() == "production"


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


#: the deployment's production switch (shared with the assistant's deployables)
PRODUCTION_VARIABLE = "SUPPORT_ASSISTANT_ENV"
MIN_TOKEN_LENGTH = 16


def production_problem(settings: BackofficeSettings, environ: Optional[Dict[str, str]] = None) -> Optional[str]:
    """In production mode, why the API token must not be used (None when it may)."""
    env = os.environ if environ is None else environ
    if (env.get(PRODUCTION_VARIABLE) or "").strip().lower() != "production":
        return None
    token = settings.api_token.strip()
    if not token or token == DEFAULT_API_TOKEN or token.lower().startswith("dev-"):
        return "BACKOFFICE_API_TOKEN is unset or the development default"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"BACKOFFICE_API_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters"
    return None


def _serve(settings: BackofficeSettings, reset: bool) -> None:
    from backoffice.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not _is_production():
        _seed(settings, reset, quiet_if_present=True)  # the demo data, never into a production database
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
    problem = production_problem(settings)
    if problem is not None and args.command == "serve":
        print(f"✗ The back office does not start in production mode ({PRODUCTION_VARIABLE}=production): "
              f"{problem}.", file=sys.stderr)
        return 2
    if args.command == "seed":
        _seed(settings, args.reset)
    else:
        _serve(settings, args.reset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
