"""Human hand-off: who owns a conversation (the bot, a queue, an operator) and the operator's copilot.

The core is a state machine per conversation, persisted in SQL (``handoff.db`` or any SQLAlchemy
URL): ``bot → waiting → operator → bot`` (and ``closed``), with a guard the channel asks before
any bot message goes out, the customer's and the operator's messages, an audit of every
transition, and the copilot's events for analytics. Nothing happens on import.

    service = HandoffService.from_settings(HandoffSettings.from_env())
    service.hand_over("sender-1", ticket_id="42", summary={...}, transcript=[...])
    service.take("sender-1", operator="anna")
"""
