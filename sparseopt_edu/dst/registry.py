"""The one list of DST methods (name -> class), and the functions that build one by name.

Each method class declares what its builder needs to know (``core.DynamicSparsity``): ``name``,
``initial_fan_in`` (the mask ``sparsify`` should draw for it), ``needs_gradient`` and ``options`` (the keyword
arguments of its own). The trainer, the CLI's choices and ``TrainConfig`` read them from here, so adding a method
is one class with its declarations plus one :func:`register` call; nothing else names a method.

Options a method does not take are refused, not dropped: a dropped ``grow_from="corrected"`` given to SET would
look like the paper's ablation and be a plain SET run. A caller holding settings for every method (a
``TrainConfig``) picks the ones the method declares with :func:`options_of`.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping

from .core import DynamicSparsity
from .methods import SET, RigL, SRigL, Static

FAN_INS = ("random", "constant")  # what sparsify(fan_in=...) can draw

METHODS: dict[str, type[DynamicSparsity]] = {}

#: The core's own keywords (the schedule, seed, assume_elementwise): every method takes them.
CORE_KEYWORDS = tuple(n for n, p in inspect.signature(DynamicSparsity.__init__).parameters.items()
                      if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _keywords(cls: type) -> set[str]:
    """The keyword arguments the constructors along ``cls``'s MRO accept (options pass down as ``**kwargs``)."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {n for n, p in inspect.signature(init).parameters.items()
                      if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names


def register(cls: type[DynamicSparsity]) -> type[DynamicSparsity]:
    """Add a method under its declared ``name`` (a class decorator too); checks the declarations first."""
    if not (isinstance(cls, type) and issubclass(cls, DynamicSparsity)):
        raise TypeError(f"a DST method is a subclass of DynamicSparsity, got {cls!r}")
    name = cls.__dict__.get("name")  # its own, not inherited: a subclass of RigL must not replace RigL
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{cls.__name__} must declare its own name, e.g. name = \"{cls.__name__.lower()}\"")
    if name == "dense":
        raise ValueError("'dense' means a run without masks (no DST): give the method another name")
    if METHODS.get(name, cls) is not cls:
        raise ValueError(f"a DST method named {name!r} is already registered ({METHODS[name].__name__}): "
                         "give yours another name")
    if cls.initial_fan_in not in FAN_INS:
        raise ValueError(f"{cls.__name__}.initial_fan_in must be one of {FAN_INS}, got {cls.initial_fan_in!r}")
    missing = [o for o in cls.options if o not in _keywords(cls)]
    if missing:
        raise ValueError(f"{cls.__name__}.options names {missing}, which its constructor does not take")
    METHODS[name] = cls
    return cls


def method_class(method: str) -> type[DynamicSparsity]:
    """The class registered as ``method``, or a ValueError that lists the choices."""
    cls = METHODS.get(method) if isinstance(method, str) else None
    if cls is None:
        dense = " ('dense' trains without masks, so it has no DST)" if method == "dense" else ""
        raise ValueError(f"unknown DST method {method!r}{dense}: choose one of {', '.join(METHODS)}")
    return cls


def initial_fan_in(method: str) -> str:
    """The ``fan_in`` to give ``sparsify`` for ``method``: SRigL starts from constant fan-in, the others random."""
    return method_class(method).initial_fan_in


def options_of(method: str, settings) -> dict:
    """The options ``method`` declares, read from ``settings`` (a mapping, or an object such as a TrainConfig)
    where it has them: ``build(m, ..., **options_of(m, cfg))`` gives each method what it takes."""
    cls = method_class(method)
    if isinstance(settings, Mapping):
        return {o: settings[o] for o in cls.options if o in settings}
    return {o: getattr(settings, o) for o in cls.options if hasattr(settings, o)}


def build(method: str, masks, optimizer=None, **settings) -> DynamicSparsity:
    """Make the DST method named ``method``: ``build("rigl", masks, opt, total_steps=T, grow_from="raw")``.

    ``settings``: the core's keywords (``schedule``, or ``delta_t``, ``alpha``, ``t_end``, ``total_steps``,
    ``t_end_steps``; ``seed``, ``assume_elementwise``) and the options the method declares. Anything else is
    refused with the options each method takes (see the module docstring for why).
    """
    cls = method_class(method)
    unknown = sorted(set(settings) - set(CORE_KEYWORDS) - set(cls.options))
    if unknown:
        takes = f"its options are {', '.join(cls.options)}" if cls.options else "it has no options of its own"
        others = "; ".join(f"{n}: {', '.join(c.options)}" for n, c in METHODS.items() if c.options and c is not cls)
        raise TypeError(f"DST method {method!r} does not take {', '.join(unknown)}: {takes} (options by method: "
                        f"{others or 'none'}; every method takes {', '.join(CORE_KEYWORDS)})")
    return cls(masks, optimizer, **settings)


for _cls in (Static, SET, RigL, SRigL):
    register(_cls)
