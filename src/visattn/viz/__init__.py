"""Seeing attention: record the weights of visattn modules, Grad-CAM, and the `visattn show` pictures.

:class:`Recorder` and :func:`grad_cam` need only torch; the class-by-channel heat-maps of
``visattn show`` are drawn with matplotlib when it is installed (``pip install 'visattn[viz]'``) and as
plain images otherwise.
"""

from .gradcam import find_last_stage, grad_cam
from .recorder import Recorder, Site, attention_modules

__all__ = ["Recorder", "Site", "attention_modules", "find_last_stage", "grad_cam", "show_model", "show_run"]


def __getattr__(name: str):
    if name in ("show_model", "show_run"):
        from . import show

        return getattr(show, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
