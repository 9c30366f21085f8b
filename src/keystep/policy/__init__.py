"""Access policy as data, and the pure function that decides every request."""

from keystep.policy.decide import Decision, decide
from keystep.policy.model import BreakGlass, Grant, PolicyError, Principal

__all__ = ["BreakGlass", "Decision", "Grant", "PolicyError", "Principal", "decide"]
