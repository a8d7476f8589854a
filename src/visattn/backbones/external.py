"""Any classifier by name, with attention put in: ``timm:NAME``, ``tv:NAME`` or one of visattn's own backbones.

:func:`create_classifier` builds the network (timm's ``create_model``, torchvision's ``get_model`` or
:func:`visattn.backbones.create`, never with downloaded weights), sets its classes and input channels,
puts the attention module in with :func:`visattn.attach`, and returns the model with its *model spec*: a
plain, JSON-friendly dict from which :func:`classifier_from_spec` rebuilds the very same architecture (the
same state_dict keys and shapes). A training run saves that spec beside its weights.

The attention is written in the command line's grammar, ``KEY[:ARG=VALUE...]`` (:mod:`visattn.spec`):
``"cbam"``, ``"se:reduction=8"``. ``where`` (an fnmatch glob over module names) and ``replace`` are
:func:`visattn.attach`'s options.

Example:
    >>> import torch
    >>> model, spec = create_classifier("resnet20", num_classes=3, in_chans=1, attention="se:reduction=4")
    >>> spec["backbone"], spec["attention"], spec["attention_kwargs"]
    ('resnet20', 'se', {'reduction': 4})
    >>> rebuilt = classifier_from_spec(spec)
    >>> rebuilt.load_state_dict(model.state_dict())
    <All keys matched successfully>
    >>> rebuilt(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

from torch import nn

from .attach import attach
from .resnet import create as create_backbone
from .resnet import list_backbones, transform_options

__all__ = ["create_classifier", "classifier_from_spec", "split_backbone_name", "preprocessing_for",
           "check_input_size", "check_backbone_name", "SPEC_FIELDS", "PREFIXES"]

#: backbone name prefixes and the library that builds them.
PREFIXES = {"timm": "timm", "tv": "torchvision"}
#: the keys of a model spec, in order.
SPEC_FIELDS = ("backbone", "num_classes", "in_chans", "attention", "attention_kwargs", "where", "replace",
               "position", "transform", "transform_kwargs", "input_size", "backbone_kwargs")


def split_backbone_name(backbone: str) -> tuple[str, str]:
    """``("timm" | "tv" | "visattn", name)`` of a backbone written ``timm:NAME``, ``tv:NAME`` or ``NAME``.

    Raises:
        ValueError: an empty name or an unknown prefix.

    Example:
        >>> split_backbone_name("timm:resnet10t"), split_backbone_name("resnet20")
        (('timm', 'resnet10t'), ('visattn', 'resnet20'))
    """
    if not isinstance(backbone, str) or not backbone.strip():
        raise ValueError(f"backbone must be a name such as resnet20, timm:resnet50 or tv:resnet18, got {backbone!r}")
    prefix, colon, name = backbone.strip().partition(":")
    if not colon:
        return "visattn", prefix
    if prefix not in PREFIXES or not name:
        raise ValueError(f"backbone {backbone!r}: expected timm:NAME, tv:NAME or one of visattn's own names "
                         f"({', '.join(list_backbones())})")
    return prefix, name


def check_backbone_name(backbone: str) -> None:
    """Refuse a backbone name that cannot be built, before any data is read (nothing is built).

    Raises:
        ValueError: an unknown prefix, or an unknown timm / torchvision / visattn name (the closest suggested).
        ImportError: ``timm:`` / ``tv:`` without that library.

    Example:
        >>> check_backbone_name("resnet20")
        >>> check_backbone_name("tv:resnet19")
        Traceback (most recent call last):
        ...
        ValueError: unknown torchvision model 'resnet19'. Did you mean tv:resnet18, tv:resnet152, tv:resnet101?
    """
    family, name = split_backbone_name(backbone)
    if family == "timm":
        timm = _library("timm")
        if not timm.is_model(name):
            raise _unknown("timm", name, timm.list_models(), "timm:")
    elif family == "tv":
        models = _library("tv").models
        known = models.list_models(module=models)
        if name not in known:
            raise _unknown("torchvision", name, known, "tv:")
    elif name not in list_backbones():
        close = difflib.get_close_matches(name.lower(), list_backbones(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}.{hint} visattn's own: {', '.join(list_backbones())}; "
                         "or timm:NAME, tv:NAME")


def _library(prefix: str):
    module = PREFIXES[prefix]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"backbone {prefix}:NAME needs {module}: pip install 'visattn[train]' "
                          f"(or pip install {module})") from None


def _unknown(kind: str, name: str, known: list[str], prefix: str) -> ValueError:
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(f'{prefix}{k}' for k in close)}?" if close else ""
    return ValueError(f"unknown {kind} model {name!r}.{hint}")


def _timm_model(name: str, num_classes: int, in_chans: int, kwargs: Mapping[str, Any]) -> nn.Module:
    timm = _library("timm")
    if not timm.is_model(name):
        raise _unknown("timm", name, timm.list_models(), "timm:")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)


def _set_input_channels(model: nn.Module, in_chans: int, name: str) -> None:
    """Swap the first conv of a torchvision model for one taking ``in_chans`` channels (the same geometry)."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None or first[1].groups != 1:
        raise ValueError(f"tv:{name}: cannot change its input channels to {in_chans} (no plain first conv)")
    path, conv = first
    if getattr(model, "transform_input", False):
        raise ValueError(f"tv:{name}: its input transform is fixed to 3 channels; in_chans={in_chans} is not possible")
    new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode)
    parent_name, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def _torchvision_model(name: str, num_classes: int, in_chans: int, kwargs: Mapping[str, Any]) -> nn.Module:
    torchvision = _library("tv")
    models = torchvision.models
    known = models.list_models(module=models)  # classification models only
    if name not in known:
        raise _unknown("torchvision", name, known, "tv:")
    model = models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    if in_chans != 3:
        _set_input_channels(model, in_chans, name)
    return model


def _parse_attention(attention: str | None, attention_kwargs: Mapping[str, Any] | None) -> tuple[str | None, dict]:
    kwargs = dict(attention_kwargs or {})
    if attention is None or str(attention).strip().lower() in ("", "none"):
        if kwargs:
            raise ValueError(f"attention_kwargs {sorted(kwargs)} need an attention module")
        return None, {}
    from ..spec import parse_module

    parsed = parse_module(str(attention))
    twice = sorted(set(parsed.kwargs_dict()) & set(kwargs))
    if twice:
        raise ValueError(f"attention {attention!r}: {', '.join(twice)} given twice (in the spec and attention_kwargs)")
    return parsed.key, {**parsed.kwargs_dict(), **kwargs}


def _plain(value: Any) -> Any:
    """JSON's view of a value: tuples become lists (a spec read back from JSON is then equal to the original)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _tuples(value: Any) -> Any:
    """Lists back to tuples (module arguments such as ``pool_sizes=(20, 12)`` are tuples)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _pair(size: int | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def create_classifier(backbone: str, *, num_classes: int, in_chans: int = 3, attention: str | None = None,
                      attention_kwargs: Mapping[str, Any] | None = None, where: str | None = None,
                      replace: bool = False, position: str = "standard", transform: str | None = None,
                      transform_kwargs: Mapping[str, Any] | None = None,
                      input_size: int | tuple[int, int] | None = None,
                      backbone_kwargs: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build classifier ``backbone`` with ``attention`` in it, and the plain-dict spec that rebuilds it.

    Args:
        backbone: ``timm:NAME`` (any ``timm.list_models()`` name), ``tv:NAME`` (a torchvision classification
            model) or visattn's own name (``visattn.backbones.list_backbones()``). No weights are downloaded:
            load them with :func:`visattn.weights.load_pretrained`.
        num_classes: classifier outputs.
        in_chans: input channels (a torchvision model's first conv is rebuilt for them).
        attention: ``KEY[:ARG=VALUE...]`` (:mod:`visattn.spec`), or ``None`` / ``"none"``.
        attention_kwargs: more of the module's keyword arguments.
        where: put the module after every module whose name matches this glob (:func:`visattn.attach`).
        replace: swap the network's own attention (an EfficientNet's or SE-ResNet's SE) for ``attention``.
        position: ``"standard"``, ``"pre"``, ``"post"`` or ``"identity"`` in ResNet blocks.
        transform: a transform-role module (``"stn"``) at the network input.
        transform_kwargs: its arguments (``{"output_size": 30}``: the STN paper's downsampling, the network
            after it built for the smaller grid; ``{"loc_net": "paper"}``), over the default sizing.
        input_size: network input ``(H, W)``; size-bound modules (PSA, RGA) and ``where``'s dry run use it.
            Default: the data size visattn's own networks are built for, 224 for timm / torchvision.
        backbone_kwargs: further arguments of the network's builder (``zero_init_residual=True``,
            timm's ``drop_path_rate=0.1``, ...).

    Returns:
        ``(model, spec)``: the model (random weights, train mode) and its spec, a dict of :data:`SPEC_FIELDS`
        holding only JSON types, so that ``classifier_from_spec(json.loads(json.dumps(spec)))`` builds the
        same architecture.

    Raises:
        ValueError: an unknown timm / torchvision name (the closest names suggested), a bad attention spec or
            placement (one line from :func:`visattn.attach`).
        KeyError: an unknown visattn backbone name (the closest suggested).
        ImportError: ``timm:`` / ``tv:`` without that library installed.
    """
    family, name = split_backbone_name(backbone)
    key, module_kwargs = _parse_attention(attention, attention_kwargs)
    if transform is not None and str(transform).strip().lower() in ("", "none"):
        transform = None
    options = dict(backbone_kwargs or {})
    transform_args = dict(transform_kwargs or {})
    if transform_args and transform is None:
        raise ValueError(f"{backbone}: transform_kwargs {sorted(transform_args)} need a transform (e.g. stn)")
    size = _pair(input_size)
    if num_classes < 0 or in_chans < 1:
        raise ValueError(f"{backbone}: num_classes must be >= 0 and in_chans >= 1, got {num_classes}, {in_chans}")
    own_placement = family == "visattn" and where is None and not replace
    if family == "visattn":
        extra = {"input_size": size} if size is not None else {}
        model = create_backbone(name, attention=key if own_placement else None,
                                attention_kwargs=module_kwargs if own_placement and key else None,
                                position=position if own_placement and key else "standard",
                                num_classes=num_classes, in_chans=in_chans, transform=transform,
                                transform_kwargs=transform_args or None, **extra, **options)
    else:
        build = _timm_model if family == "timm" else _torchvision_model
        model = build(name, num_classes, in_chans, options)
        if transform is not None:
            attach_size = size or (224, 224)
            attach(model, transform, input_size=attach_size,
                   **transform_options(transform, attach_size, transform_args))
    if key is not None and not own_placement:
        extra = {"position": position} if where is None else {}
        attach(model, key, where=where, replace=replace, input_size=size or (224, 224) if where is None else size,
               **extra, **module_kwargs)
    spec = {"backbone": f"{family}:{name}" if family != "visattn" else name, "num_classes": int(num_classes),
            "in_chans": int(in_chans), "attention": key, "attention_kwargs": _plain(module_kwargs), "where": where,
            "replace": bool(replace), "position": position, "transform": transform,
            "transform_kwargs": _plain(transform_args), "input_size": None if size is None else list(size),
            "backbone_kwargs": _plain(options)}
    return model, spec


def classifier_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """The model a spec from :func:`create_classifier` describes (random weights; load the run's into it).

    Raises:
        ValueError: a spec with unknown or missing fields (named), or one the builders refuse.
    """
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise ValueError(f"model spec: unknown field(s) {unknown}; a spec has {', '.join(SPEC_FIELDS)}")
    for required in ("backbone", "num_classes"):
        if required not in spec:
            raise ValueError(f"model spec: missing {required!r}")
    args = dict(spec)
    args["attention_kwargs"] = {k: _tuples(v) for k, v in dict(args.get("attention_kwargs") or {}).items()}
    for name in ("backbone_kwargs", "transform_kwargs"):  # older specs have no transform_kwargs
        args[name] = {k: _tuples(v) for k, v in dict(args.get(name) or {}).items()}
    return create_classifier(args.pop("backbone"), **args)[0]


def preprocessing_for(backbone: str) -> dict[str, Any] | None:
    """What the network's published weights expect: input size, mean, std, crop fraction, interpolation.

    From timm's ``pretrained_cfg`` for ``timm:NAME`` (read locally, nothing downloads) and from the default
    weights' meta data for ``tv:NAME``; ``None`` for visattn's own networks (their statistics come from the
    training data).

    Example:
        >>> preprocessing_for("timm:resnet10t")["mean"]
        [0.485, 0.456, 0.406]
    """
    family, name = split_backbone_name(backbone)
    if family == "timm":
        timm = _library("timm")
        if not timm.is_model(name):
            raise _unknown("timm", name, timm.list_models(), "timm:")
        cfg = timm.models.get_pretrained_cfg(name) or {}
        if hasattr(cfg, "to_dict"):
            cfg = cfg.to_dict()
        return {"input_size": list(cfg.get("input_size", (3, 224, 224))[-2:]), "mean": list(cfg.get("mean")),
                "std": list(cfg.get("std")), "crop_pct": float(cfg.get("crop_pct", 0.875)),
                "interpolation": str(cfg.get("interpolation", "bilinear"))}
    if family == "tv":
        models = _library("tv").models
        try:
            weights = models.get_model_weights(name).DEFAULT
        except (ValueError, KeyError):
            raise _unknown("torchvision", name, models.list_models(module=models), "tv:") from None
        t = weights.transforms()
        crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
        return {"input_size": [crop, crop], "mean": list(t.mean), "std": list(t.std), "crop_pct": crop / resize,
                "interpolation": t.interpolation.value}
    return None


def check_input_size(model: nn.Module, in_chans: int, size: int | tuple[int, int], *, name: str = "") -> None:
    """Refuse an input size the network cannot take, before any training: one forward pass of a blank image.

    A network with a fixed input size (a timm ViT built for 224), a size-bound attention module built for
    another feature size (PSA, RGA), or an input too small for the network's down-sampling raise here, with
    the network's own reason, instead of deep inside the first training step.

    Args:
        model: the network (left in the train / eval mode it was in; no gradients are kept).
        in_chans: input channels.
        size: input side, or ``(H, W)``.
        name: what to call the network in the message (default its class name).

    Raises:
        ValueError: one line: the size, the network and the reason.

    Example:
        >>> from visattn.backbones import create
        >>> check_input_size(create("resnet20"), 3, 8)
    """
    import torch

    h, w = _pair(size)
    param = next(model.parameters(), None)
    x = torch.zeros(1, in_chans, h, w, device=param.device if param is not None else "cpu",
                    dtype=param.dtype if param is not None and param.is_floating_point() else torch.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    except (RuntimeError, ValueError, AssertionError, TypeError) as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        reason = lines[0][:200] if lines else type(err).__name__
        raise ValueError(f"input size {h}x{w} does not fit {name or type(model).__name__}: {reason}") from None
    finally:
        model.train(was_training)
