"""The module registry: one key per attention mechanism, with the facts about its paper.

Every module class is registered once with ``@register(key, **metadata)``. The metadata is written
once and drives ``visattn list``/``info``, the docs table, the benchmarks and the test suite.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .catalogue import Catalogue

__all__ = ["ModuleInfo", "register", "create", "list_modules", "info", "ROLES", "DOMAINS", "COMPLEXITIES", "PLACEMENTS",
           "DEFAULT_PLACEMENT"]

#: What a module does in a network, and so what its ``forward`` takes and returns.
#: plugin: ``(B, C, H, W) -> (B, C, H, W)``, re-weights a feature map in place.
#: conv: replaces a convolution, ``(B, C, H, W) -> (B, out_channels, H/stride, W/stride)``.
#: context: relation-based, ``(B, C, H, W) -> (B, C, H, W)`` (or ``out_channels``), usually O((HW)^2).
#: gate: ``forward(x, g)`` with a gating signal ``g``, returns x's shape.
#: transform: warps its input, same shape.
ROLES = ("plugin", "conv", "context", "gate", "transform")
DOMAINS = ("channel", "spatial", "channel+spatial", "context")
COMPLEXITIES = ("O(HW)", "O(HW(H+W))", "O((HW)^2)")

#: Where ``visattn.attach`` puts a module in a network (``ModuleInfo.placement``), and the roles that may use each.
#: every_block: in every block, at the block's attention place (ResNets: at ``position``, SE paper Fig. 5).
#: stage_end: after the last block of every stage but the last, where the network down-samples (BAM's
#: "bottlenecks").
#: every_stage_end: after the last block of every stage (RGA).
#: after_last_stage: once, after the last block of the last stage, before global pooling.
#: every_other_block: ResNets: after every other block of stages 2 and 3, at most 2 and 3 blocks (the non-local
#: paper's 5-block model); other families: as after_last_stage.
#: replaces_conv3x3: replaces the 3x3 conv of each residual block that carries the stride.
#: replaces_conv3x3_norm: as replaces_conv3x3, and the norm after that conv becomes ``nn.Identity`` because the
#: module normalises its own output (SK's branches end in BN + ReLU).
#: input: on the network input, before the stem.
#: decoder_skip: on an encoder-decoder's skip connections, gated by the coarser decoder signal; attach refuses it
#: in a classification network, which has no gating signal.
PLACEMENTS: dict[str, tuple[str, ...]] = {
    "every_block": ("plugin", "context"),
    "stage_end": ("plugin", "context"),
    "every_stage_end": ("plugin", "context"),
    "after_last_stage": ("plugin", "context"),
    "every_other_block": ("plugin", "context"),
    "replaces_conv3x3": ("conv",),
    "replaces_conv3x3_norm": ("conv",),
    "input": ("transform",),
    "decoder_skip": ("gate",),
}
#: placement of a module registered without one, by role.
DEFAULT_PLACEMENT = {"plugin": "every_block", "conv": "replaces_conv3x3", "context": "after_last_stage",
                     "transform": "input", "gate": "decoder_skip"}


@dataclass(frozen=True)
class ModuleInfo:
    """Facts about one registered attention module.

    Attributes:
        key: registry key, short lowercase (``"se"``).
        cls: the module class.
        title: the module's name as its paper gives it.
        paper: the paper's title.
        authors: first author "et al.".
        venue: where it appeared (``"CVPR"``), or ``"arXiv"``.
        year: publication year.
        arxiv: arXiv id, or ``None``.
        code: URL of the official code, or ``None``.
        family: the file/family it belongs to (``"squeeze-excite"``).
        domain: one of :data:`DOMAINS`.
        weights: how the attention weights are computed (``"pool+mlp"``, ``"conv"``, ``"matmul"``,
            ``"statistics"``, ``"sampling"``).
        applied: how they are applied (``"scale"``, ``"matrix product"``, ``"add"``, ``"warp"``).
        role: one of :data:`ROLES`.
        complexity: spatial complexity, one of :data:`COMPLEXITIES`.
        parameter_free: whether the module has no learnable parameters.
        note: where the paper and the official code differ and which one visattn follows.
        size_bound: the module is built for one feature size and takes ``feature_size=(H, W)``.
        placement: where ``visattn.attach`` puts it in a network, one of :data:`PLACEMENTS`:
            ``"every_block"`` (SE, CBAM, ...: in every block), ``"stage_end"`` (BAM: after the last block of every
            stage but the last), ``"every_stage_end"`` (RGA), ``"after_last_stage"`` (most context modules),
            ``"every_other_block"`` (non-local: every other block of ResNet stages 2 and 3),
            ``"replaces_conv3x3"`` / ``"replaces_conv3x3_norm"`` (conv role: SK, SC-Conv, SANet, the second also
            drops the norm after the conv), ``"input"`` (STN) or ``"decoder_skip"`` (attention gate). Stated in
            the module's ``@register`` call (by role when omitted: :data:`DEFAULT_PLACEMENT`), so that attach
            places a new module right without an edit of its own.
        defaults: keyword defaults of the constructor (derived from its signature), without the factory
            arguments ``device`` and ``dtype`` that every module takes (see :func:`register`).
    """

    key: str
    cls: type[nn.Module]
    title: str
    paper: str
    authors: str
    venue: str
    year: int
    arxiv: str | None
    code: str | None
    family: str
    domain: str
    weights: str
    applied: str
    role: str
    complexity: str
    parameter_free: bool = False
    note: str = ""
    size_bound: bool = False
    placement: str = "every_block"
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def paper_url(self) -> str | None:
        """Link to the paper (arXiv abstract page) when it has an arXiv id."""
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else None

    @property
    def citation(self) -> str:
        """Short citation, e.g. ``Hu et al., CVPR 2018``."""
        return f"{self.authors}, {self.venue} {self.year}"


def _module_info(key: str, cls: type[nn.Module], **metadata: Any) -> ModuleInfo:
    return ModuleInfo(key=key, cls=cls, defaults=_constructor_defaults(cls), **metadata)


#: every registered module, filled by :func:`register` when :mod:`visattn.modules` is imported
_REGISTRY: Catalogue[ModuleInfo] = Catalogue("module", _module_info, package="visattn.modules",
                                             lister="`visattn.list_modules()` lists all keys.")


#: keyword arguments every registered module takes, as torch layers and timm pass them.
FACTORY_KWARGS = ("device", "dtype")


def _constructor_defaults(cls: type) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params
            if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.name not in FACTORY_KWARGS}


def _add_factory_kwargs(cls: type[nn.Module]) -> None:
    """Give ``cls.__init__`` the keyword arguments ``device=`` and ``dtype=`` of torch's layers.

    The module is built under ``with torch.device(device)`` (so ``device="meta"`` allocates nothing), then
    its floating-point parameters and buffers are cast to ``dtype``. A class whose constructor already takes
    ``device`` is left as it is.
    """
    init = cls.__dict__.get("__init__")
    if init is None:
        return  # inherits an __init__ (wrapped where its own class was registered, or a plain nn.Module one)
    sig = inspect.signature(init)
    if "device" in sig.parameters:
        return

    @functools.wraps(init)
    def __init__(self, *args: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 **kwargs: Any) -> None:
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"{cls.__name__}: dtype must be a floating-point torch.dtype, got {dtype!r}")
        if device is None:
            init(self, *args, **kwargs)
        else:
            with torch.device(device):
                init(self, *args, **kwargs)
        if dtype is not None:
            self.to(dtype=dtype)

    params = list(sig.parameters.values())
    tail = [p for p in params if p.kind is p.VAR_KEYWORD]
    head = [p for p in params if p.kind is not p.VAR_KEYWORD]
    factory = [inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation="torch.device | str | None"),
               inspect.Parameter("dtype", inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation="torch.dtype | None")]
    __init__.__signature__ = sig.replace(parameters=head + factory + tail)  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


def register(key: str, **metadata: Any):
    """Class decorator adding an attention module to the registry under ``key``.

    The class's constructor gains the factory keyword arguments ``device=`` and ``dtype=`` of torch's layers
    (``visattn.create("cbam", 64, device="meta")``), which timm also passes to an ``attn_layer``.

    Args:
        key: short lowercase registry key.
        **metadata: the :class:`ModuleInfo` fields other than ``key``, ``cls`` and ``defaults``; ``placement``
            defaults to the role's (:data:`DEFAULT_PLACEMENT`).

    Raises:
        ValueError: if ``key`` is already registered, a field has a value outside its vocabulary, or the
            placement does not suit the role.
    """

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if key in _REGISTRY:  # checked before the class is touched
            raise ValueError(f"visattn: registry key {key!r} is already registered to {_REGISTRY[key].cls.__name__}")
        if key != key.lower() or not key.replace("_", "").isalnum():
            raise ValueError(f"visattn: registry key {key!r} must be lowercase letters, digits and '_'")
        for name, allowed in (("role", ROLES), ("domain", DOMAINS), ("complexity", COMPLEXITIES)):
            if metadata.get(name) not in allowed:
                raise ValueError(f"visattn: {key!r} has {name}={metadata.get(name)!r}; expected one of {allowed}")
        role = metadata["role"]
        fields = {"placement": DEFAULT_PLACEMENT[role], **metadata}
        if role not in PLACEMENTS.get(fields["placement"], ()):
            suits = [p for p, roles in PLACEMENTS.items() if role in roles]
            raise ValueError(f"visattn: {key!r} has placement={fields['placement']!r}; a {role} module takes one "
                             f"of {suits}")
        _add_factory_kwargs(cls)
        _REGISTRY.add(key, _module_info(key, cls, **fields))
        return cls

    return decorator


def _lookup(key: str) -> ModuleInfo:
    return _REGISTRY.get(key)


def info(key: str) -> ModuleInfo:
    """Return the :class:`ModuleInfo` of ``key``; raises ``KeyError`` with suggestions if unknown."""
    return _lookup(key)


def list_modules(pattern: str | None = None, role: str | None = None) -> list[str]:
    """Sorted registry keys, optionally filtered by an fnmatch ``pattern`` and a ``role``.

    Example:
        >>> "se" in list_modules()
        True
        >>> list_modules("cb*")
        ['cbam']
    """
    if role is not None and role not in ROLES:
        raise ValueError(f"visattn: unknown role {role!r}; expected one of {ROLES}")
    keys = _REGISTRY.keys(pattern)
    if role is not None:
        keys = [k for k in keys if _REGISTRY[k].role == role]
    return keys


#: constructor arguments that count or divide something: zero or negative is never meaningful
_POSITIVE_ARGUMENTS = frozenset({
    "reduction", "rd_channels", "groups", "num_heads", "bases", "iterations", "recurrence", "cha_ratio", "spa_ratio",
    "down_ratio", "pooling_r", "kernel_size", "num_branches", "sub_sample_factor", "shrink_factor", "pool_size",
    "mlp_ratio", "depth", "dilation", "min_dim", "min_channels", "inner_channels", "out_channels", "key_channels",
    "value_channels", "inter_channels", "gating_channels", "loc_channels", "loc_hidden", "pos_size", "eps",
})


def create(key: str, channels: int, **kwargs: Any) -> nn.Module:
    """Build the module registered under ``key`` for ``channels`` input channels.

    Args:
        key: registry key (``visattn.list_modules()``).
        channels: input channels, the first argument of every module.
        **kwargs: the module's keyword arguments (see ``visattn.info(key).defaults``), and ``device`` /
            ``dtype`` as for torch's layers (``device="meta"`` builds without allocating).

    Raises:
        KeyError: unknown key (with the closest keys suggested).
        TypeError: a keyword argument the module does not take (with the ones it does).
        ValueError: ``channels`` is not a positive integer, a counting argument (``reduction``, ``groups``...)
            is zero or negative, or the module cannot be built with these arguments; the message names
            the module.

    Example:
        >>> m = create("se", 64, reduction=8)
        >>> type(m).__name__
        'SqueezeExcite'
        >>> next(create("cbam", 64, device="meta").parameters()).is_meta
        True
    """
    meta = _lookup(key)
    params = inspect.signature(meta.cls.__init__).parameters
    accepted = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, accepted, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"visattn: {meta.cls.__name__} ({key!r}) got unexpected keyword argument(s) {', '.join(hints)}; "
            f"it accepts {accepted}"
        )
    name = f"{meta.cls.__name__} ({key!r})"
    if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
        raise ValueError(f"{name}: channels must be a positive integer, got {channels!r}")
    for arg, value in kwargs.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if arg in _POSITIVE_ARGUMENTS and number and value <= 0:
            raise ValueError(f"{name}: {arg} must be positive, got {value!r}")
    try:
        return meta.cls(channels, **kwargs)
    except (ValueError, TypeError, ZeroDivisionError, RuntimeError) as err:
        # one error type, naming the module, whatever the constructor tripped over
        message = str(err).splitlines()[0] if str(err).strip() else type(err).__name__
        if message.startswith(meta.cls.__name__):
            if isinstance(err, ValueError):
                raise
            raise ValueError(message) from err
        raise ValueError(f"{name}: cannot be built with channels={channels}"
                         + (f", {', '.join(f'{k}={v!r}' for k, v in kwargs.items())}" if kwargs else "")
                         + f" ({type(err).__name__}: {message})") from err
