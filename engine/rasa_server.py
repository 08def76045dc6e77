"""The stack's Rasa server: ``rasa run`` with the runtime fixes of :mod:`engine.rasa_runtime`.

    python -m engine.rasa_server [any `rasa run` option]      (the run command starts it so)
"""
from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    from engine.rasa_runtime import apply_runtime_fixes

    apply_runtime_fixes()
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", "run", *(sys.argv[1:] if argv is None else argv)]
    rasa_main()


if __name__ == "__main__":
    main()
