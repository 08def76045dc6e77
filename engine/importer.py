"""Training-data importer that adds the designers' ``scenarios/`` folder to ``data/``.

Configured under ``importers:`` in config.yml, so a bare ``rasa train`` (whose default data path
is ``data``) trains on NLU data from ``data/`` and on rules, stories and forms from ``scenarios/``
without extra flags.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Text, Union

from rasa.shared.importers.rasa import RasaFileImporter


def _as_list(paths: Optional[Union[List[Text], Text]]) -> List[Text]:
    if paths is None:
        return []
    return [paths] if isinstance(paths, str) else list(paths)


class ProjectImporter(RasaFileImporter):
    """``RasaFileImporter`` over ``data/`` plus the configured extra folders."""

    def __init__(
        self,
        config_file: Optional[Text] = None,
        domain_path: Optional[Text] = None,
        training_data_paths: Optional[Union[List[Text], Text]] = None,
        extra_data_paths: Sequence[Text] = ("scenarios",),
        with_data_path: Text = "data",
    ) -> None:
        paths = _as_list(training_data_paths)
        # Only where the main data folder is trained on: `rasa test --stories tests/` must test
        # exactly the given stories, not the training scenarios too.
        if any(Path(path).resolve() == Path(with_data_path).resolve() for path in paths):
            paths += [path for path in extra_data_paths if os.path.isdir(path) and path not in paths]
        super().__init__(config_file, domain_path, paths)
