"""Request options (api/types.go Options, Runner, FromMap) and the scheduler's error type."""

from .logs import log

# --------------------------------------------------------------------------------------------------------------
# Options (api/types.go Options, Runner, FromMap)
# --------------------------------------------------------------------------------------------------------------

OPTION_TYPES = {
    # Runner options (compared by needsReload)
    "num_ctx": "int",
    "num_batch": "int",
    "num_gpu": "int",
    "main_gpu": "int",
    "use_mmap": "boolptr",
    "num_thread": "int",
    "draft_num_predict": "int",
    # sampling options
    "num_keep": "int",
    "seed": "int",
    "num_predict": "int",
    "top_k": "int",
    "top_p": "float32",
    "min_p": "float32",
    "typical_p": "float32",
    "repeat_last_n": "int",
    "temperature": "float32",
    "repeat_penalty": "float32",
    "presence_penalty": "float32",
    "frequency_penalty": "float32",
    "stop": "array",
}
RUNNER_KEYS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict")
RUNNER_DEFAULTS = {
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": None,  # api/types.go Runner.MainGPU is a *int, nil by default
    "use_mmap": None,
    "num_thread": 0,
    "draft_num_predict": 0,
}


class ScheduleError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def options_from_map(m, out):
    """api/types.go Options.FromMap: unknown keys ignored with a log line; wrong types -> error (500 upstream)."""
    for key, val in m.items():
        typ = OPTION_TYPES.get(key)
        if typ is None:
            log('"invalid option provided" option=%s' % key, "WARN")
            continue
        if val is None:
            continue
        if typ == "int":
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise ScheduleError(500, 'option "%s" must be of type integer' % key)
            try:
                out[key] = int(val)  # float64 truncated (FromMap SetInt(int64(t)))
            except (OverflowError, ValueError):
                out[key] = 0
        elif typ == "float32":
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise ScheduleError(500, 'option "%s" must be of type float32' % key)
            out[key] = float(val)
        elif typ == "boolptr":
            if not isinstance(val, bool):
                raise ScheduleError(500, 'option "%s" must be of type boolean' % key)
            out[key] = val
        elif typ == "array":
            if not isinstance(val, list):
                raise ScheduleError(500, 'option "%s" must be of type array' % key)
            if not all(isinstance(x, str) for x in val):
                raise ScheduleError(500, 'option "%s" must be of an array of strings' % key)
            out[key] = val
    return out
