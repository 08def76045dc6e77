"""Typed errors: one class per reason, each with a stable machine code and an HTTP status.

Raised where the rule is broken (the transition table, the service, the copilot) and turned into
``{"error": {"code": ..., "message": ...}}`` only at an HTTP boundary (the operator console).
"""
from __future__ import annotations

from typing import ClassVar, Optional


class HandoffError(Exception):
    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400
    default_message: ClassVar[str] = "Request failed."

    def __init__(self, message: Optional[str] = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidInput(HandoffError):
    code = "invalid_input"
    http_status = 400
    default_message = "The request is malformed."


class Unauthorized(HandoffError):
    code = "unauthorized"
    http_status = 401
    default_message = "A valid operator token is required."


class NotFound(HandoffError):
    code = "not_found"
    http_status = 404
    default_message = "Not found."


class ConversationNotFound(NotFound):
    code = "conversation_not_found"
    default_message = "No such conversation."


class DraftNotFound(NotFound):
    code = "draft_not_found"
    default_message = "No such copilot draft in this conversation."


# --- the state machine ------------------------------------------------------------------------


class IllegalTransition(HandoffError):
    """The transition table has no such move from the conversation's current state."""

    code = "illegal_transition"
    http_status = 409
    default_message = "This action is not possible in the conversation's current state."

    def __init__(self, message: Optional[str] = None, *, state: Optional[str] = None, action: Optional[str] = None) -> None:
        self.state = state
        self.action = action
        super().__init__(message)


class AlreadyTaken(HandoffError):
    """Another operator owns the conversation (e.g. lost a race for ``take``)."""

    code = "already_taken"
    http_status = 409
    default_message = "Another operator has already taken this conversation."

    def __init__(self, message: Optional[str] = None, *, owner: Optional[str] = None) -> None:
        self.owner = owner
        super().__init__(message)


class NotOwner(HandoffError):
    code = "not_owner"
    http_status = 403
    default_message = "Only the operator who took the conversation may do this."


class ConcurrentUpdate(HandoffError):
    """The optimistic lock kept failing (the row kept changing under us): try again."""

    code = "concurrent_update"
    http_status = 409
    default_message = "The conversation was changed concurrently; please retry."


# --- copilot ----------------------------------------------------------------------------------


class DraftAlreadyResolved(HandoffError):
    code = "draft_already_resolved"
    http_status = 409
    default_message = "This draft has already been sent or discarded."


class InvalidModesFile(HandoffError):
    """``copilot.yml`` is malformed: a configuration error, reported at start-up."""

    code = "invalid_modes_file"
    http_status = 500
    default_message = "The copilot modes file is invalid."
