"""Shared test settings: one Hypothesis profile for every property test."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Property tests search the input space; the examples per property are fixed here so the
# closing note can state them and CI time stays bounded. No deadline: the machine is shared.
settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("WATCHERD_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("ci")
