"""Analytics a support lead trusts: what happened in each conversation (``analytics.outcomes``),
read from the masked event stream and the hand-over core; the metrics per period and topic
(``analytics.metrics``); the autonomy advice per topic; a CLI (``python -m analytics report``), the
console's dashboard and REST endpoint, and demo conversations played through the running stack
(``python -m analytics demo``). Nothing happens on import."""
