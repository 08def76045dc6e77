"""``python -m webchat serve [--host H] [--port 8080] [--rasa-url http://localhost:5005]``

Serves the «Дарим» demo page with the embeddable chat widget. Options override the environment
(WEBCHAT_HOST, WEBCHAT_PORT, WEBCHAT_RASA_URL, WEBCHAT_SOCKET_PATH)."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from webchat.settings import WebchatSettings


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webchat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the demo page and the widget")
    serve.add_argument("--host", help="interface to listen on (WEBCHAT_HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (WEBCHAT_PORT, default 8080)")
    serve.add_argument("--rasa-url", help="the Rasa server as the browser reaches it (WEBCHAT_RASA_URL, "
                                          "default http://localhost:5005; '' = the page's own origin)")
    serve.add_argument("--socket-path", help="Rasa's socketio_path (WEBCHAT_SOCKET_PATH, default /socket.io)")
    args = parser.parse_args(argv)

    try:
        settings = WebchatSettings.from_env().with_overrides(
            host=args.host, port=args.port, rasa_url=args.rasa_url, socket_path=args.socket_path
        )
    except ValueError as error:
        parser.error(str(error))

    from webchat.server import create_app

    app = create_app(settings)
    print(f"«Дарим» web chat on http://{settings.host}:{settings.port}/ "
          f"(socket.io: {settings.rasa_url or 'same origin'}{settings.socket_path})", flush=True)
    app.run(host=settings.host, port=settings.port, access_log=False, motd=False, workers=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
