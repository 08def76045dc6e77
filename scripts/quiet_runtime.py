"""Installed into the venv's site-packages by scripts/setup.sh and imported at interpreter start
(through a .pth file), so that plain `rasa train`, `rasa shell`, `rasa run` stay readable:
TensorFlow's C++ logging is configured from the environment before TensorFlow is imported, and
third-party deprecation warnings are dropped (sanic re-enables them on import, so filters alone
do not hold). Set SUPPORT_ASSISTANT_WARNINGS=1 to see everything again.
"""
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")

if not os.environ.get("SUPPORT_ASSISTANT_WARNINGS"):
    _QUIET = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
    _show = warnings.showwarning

    def _showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, _QUIET):
            return
        _show(message, category, filename, lineno, file, line)

    warnings.showwarning = _showwarning
