"""Privacy canaries: values put into request inputs that must never reach logs or error bodies.

The load and soak scripts and the fuzz and privacy tests all send them and count them in
what the server wrote (DESIGN 6: logs never hold input values).
"""

from __future__ import annotations

CANARY_NUMBER = 987654.321  # a tabular feature value
CANARY_IN_RANGE = 487654.321  # one inside the valid range of credit-risk's income
CANARY_STRING = "canary-5f1e0c7a"  # a string value, a field name, image metadata
CANARIES = (repr(CANARY_NUMBER), repr(CANARY_IN_RANGE), CANARY_STRING)


def count_canaries(text: str) -> int:
    """Occurrences of any canary in `text`."""
    return sum(text.count(canary) for canary in CANARIES)
