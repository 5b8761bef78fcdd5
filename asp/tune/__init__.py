"""Choosing among variants by measuring them, and remembering the winners on disk."""
from asp.tune.db import forget, lookup, machine_id, remembered, retime, store
from asp.tune.tuner import Tuning, calls_to_decide, time_call

__all__ = ["Tuning", "calls_to_decide", "forget", "lookup", "machine_id", "remembered",
           "retime", "store", "time_call"]
