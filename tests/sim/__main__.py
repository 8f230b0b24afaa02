"""``python -m tests.sim``: run the simulator by hand (see tests.sim.server.main)."""

from __future__ import annotations

import sys

from tests.sim.server import main

sys.exit(main())
