"""Dynamic sparse training: a schedule, a generic drop-then-grow core, and the methods built on it.

``METHODS`` (name -> class) is the one registry of methods; ``build(name, masks, optimizer, ...)`` makes one.
"""
from .core import DynamicSparsity
from .methods import SET, RigL, SRigL, Static
from .registry import METHODS, build, initial_fan_in, method_class, options_of, register
from .schedule import ConstantFraction, CosineDecay, UpdateSchedule

__all__ = ["METHODS", "SET", "ConstantFraction", "CosineDecay", "DynamicSparsity", "RigL", "SRigL", "Static",
           "UpdateSchedule", "build", "initial_fan_in", "method_class", "options_of", "register"]
