"""The emulated clock: starts at the real wall clock, runs OLLAMA_EMULATOR_TIME_SCALE times faster."""

import time

from .gotime import NS

# --------------------------------------------------------------------------------------------------------------
# Emulated clock
# --------------------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, scale):
        self.scale = scale
        self.wall0 = time.time_ns()
        self.mono0 = time.monotonic_ns()

    def now_ns(self):
        return self.wall0 + int((time.monotonic_ns() - self.mono0) * self.scale)

    def real_seconds(self, emulated_ns):
        return emulated_ns / NS / self.scale
