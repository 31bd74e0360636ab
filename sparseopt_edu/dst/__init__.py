"""Dynamic sparse training: a schedule, a generic drop-then-grow core, and the methods built on it."""
from .core import DynamicSparsity
from .methods import SET, RigL, SRigL, Static
from .schedule import UpdateSchedule

METHODS = {"static": Static, "set": SET, "rigl": RigL, "srigl": SRigL}

__all__ = ["METHODS", "SET", "DynamicSparsity", "RigL", "SRigL", "Static", "UpdateSchedule"]
