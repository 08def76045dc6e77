"""Rasa 3.6's own Telegram channel (``rasa.core.channels.telegram``, aiogram 2), made usable by
the stack's Rasa server (``engine.rasa_server`` applies :func:`apply_telegram_fixes`); nothing
changes for a deployment without a ``telegram:`` block in credentials.yml.

- **The Bot API address is configurable.** ``TELEGRAM_API_URL`` (default
  ``https://api.telegram.org``) is where the channel calls ``<url>/bot<token>/<method>``: a
  self-hosted Telegram Bot API server, a proxy, or the tests' stand-in
  (tests/channels/telegram_bot_api.py). Rasa builds its aiogram ``Bot`` with the production
  server and no option to change it.
- **One output channel per input channel, usable on the server's event loop.** Rasa builds the
  output channel — and calls ``setWebhook`` through ``asyncio.run`` — every time
  ``get_output_channel()`` is called: once when the server starts, fine; again from the running
  server (the hand-over gateway's relay, which delivers operator replies) it raises
  ``asyncio.run() cannot be called from a running event loop``, so an operator's reply never
  reached a Telegram customer. And the aiogram HTTP session opened inside that ``asyncio.run``
  stays bound to its closed loop. Now the webhook is set once, at start, the session of that
  call is closed with it (the next call opens one on the server's loop), and the same output
  channel is returned afterwards — the one the webhook handler replies through.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

API_URL_ENV = "TELEGRAM_API_URL"
DEFAULT_API_URL = "https://api.telegram.org"
_applied = False


def api_url() -> str:
    return (os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")


def apply_telegram_fixes() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    from aiogram import Bot
    from aiogram.bot.api import TelegramAPIServer
    from aiogram.utils.exceptions import TelegramAPIError
    from rasa.core.channels import telegram
    from rasa.shared.exceptions import RasaException

    def output_init(self: Any, access_token: Any) -> None:
        Bot.__init__(self, access_token, server=TelegramAPIServer.from_base(api_url()))

    def get_output_channel(self: Any) -> Any:
        channel = getattr(self, "_stack_output_channel", None)
        if channel is not None:
            return channel
        channel = telegram.TelegramOutput(self.access_token)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the server is starting: register the webhook, as Rasa does
            async def set_webhook() -> None:
                try:
                    await channel.set_webhook(url=self.webhook_url)
                finally:
                    await channel.close()  # its session belongs to this short-lived loop

            try:
                asyncio.run(set_webhook())
            except TelegramAPIError as error:
                raise RasaException("Failed to set channel webhook: " + str(error)) from error
        else:
            logger.info("Telegram output channel built on a running loop: webhook not set again")
        self._stack_output_channel = channel
        return channel

    telegram.TelegramOutput.__init__ = output_init  # type: ignore[assignment]
    telegram.TelegramInput.get_output_channel = get_output_channel  # type: ignore[assignment]
