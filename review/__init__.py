"""The review loop: misses, hand-overs and operator edits turned into training data and knowledge-base fixes."""
