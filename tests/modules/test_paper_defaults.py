"""The defaults that the papers (and their official code) fix, pinned per registry key on the built module.

Each entry is checked on the module built with ``create(key, C)`` and no other argument, so a changed default
(criss-cross with one recurrence, SE with r = 8, ...) fails here by name. Sizes are read off the built layers,
not off the constructor's signature, so a default that is declared right but used wrong also fails.
"""

from __future__ import annotations

import math

import pytest

import visattn
from tests._build import build

C = 256


def eca_kernel(channels: int, gamma: float = 2, b: float = 1) -> int:
    """ECA-Net eq. 12: k = |log2(C) / gamma + b / gamma|_odd."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def _width(module) -> int:
    return module.out_channels if hasattr(module, "out_channels") else module.out_features


# key -> {what: (function of the built module, value the paper fixes)}
PAPER_DEFAULTS = {
    "cc": {"recurrence R = 2": (lambda m: m.recurrence, 2), "query width C/8": (lambda m: _width(m.query_conv), C // 8),
           "key width C/8": (lambda m: _width(m.key_conv), C // 8)},
    "pam": {"query width C/8": (lambda m: _width(m.query_conv), C // 8), "key width C/8": (lambda m: _width(m.key_conv),
                                                                                          C // 8)},
    "danet": {"PAM query width C/8": (lambda m: _width(m.pam.query_conv), C // 8)},
    "ema": {"bases K = 64": (lambda m: m.bases, 64), "mu holds K bases": (lambda m: tuple(m.mu.shape), (1, C, 64)),
            "iterations T = 3": (lambda m: m.iterations, 3)},
    "se": {"reduction r = 16": (lambda m: _width(m.fc1), C // 16)},
    "eca": {"k from C (eq. 12)": (lambda m: m.conv.kernel_size[0], eca_kernel(C)),
            "k at C = 64": (lambda m: build("eca", channels=64).conv.kernel_size[0], eca_kernel(64)),
            "k at C = 2048": (lambda m: build("eca", channels=2048).conv.kernel_size[0], eca_kernel(2048))},
    "sge": {"groups G = 64": (lambda m: m.groups, 64)},
    "nonlocal": {"inter channels C/2": (lambda m: m.inter_channels, C // 2),
                 "theta width C/2": (lambda m: _width(m.theta), C // 2),
                 "phi, g width C/2": (lambda m: (_width(m.phi), _width(m.g)), (C // 2, C // 2)),
                 "embedded Gaussian": (lambda m: m.mode, "embedded_gaussian")},
    "cbam": {"reduction r = 16": (lambda m: _width(m.channel_gate.mlp[1]), C // 16),
             "spatial kernel 7": (lambda m: m.spatial_gate.spatial.conv.kernel_size, (7, 7))},
    "bam": {"channel reduction r = 16": (lambda m: _width(m.channel_att.gate_c.gate_c_fc_0), C // 16),
            "spatial reduction r = 16": (lambda m: _width(m.spatial_att.gate_s.gate_s_conv_reduce0), C // 16),
            "dilation d = 4": (lambda m: m.spatial_att.gate_s.gate_s_conv_di_0.dilation, (4, 4)),
            "two dilated convs": (lambda m: hasattr(m.spatial_att.gate_s, "gate_s_conv_di_1")
                                  and not hasattr(m.spatial_att.gate_s, "gate_s_conv_di_2"), True)},
    "gc": {"ratio 1/16": (lambda m: _width(m.channel_add_conv[0]), C // 16),
           "attention pooling, add fusion": (lambda m: (m.pool, m.fusion), ("att", "add"))},
    "coord": {"reduction r = 32, at least 8": (lambda m: _width(m.conv1), max(8, C // 32)),
              "r = 32 at C = 512": (lambda m: _width(build("coord", channels=512).conv1), 512 // 32)},
    "scse": {"cSE reduction r = 2": (lambda m: _width(m.cse.fc1), C // 2)},
    "sk": {"M = 2 branches": (lambda m: m.num_branches, 2), "G = 32 groups": (lambda m: m.paths[0].conv.groups, 32),
           "d = max(C/r, L) with r = 16, L = 32": (lambda m: _width(m.fc_reduce), max(C // 16, 32)),
           "3x3 and dilated 3x3 (5x5)": (lambda m: (m.paths[0].conv.dilation, m.paths[1].conv.dilation),
                                         ((1, 1), (2, 2)))},
    "triplet": {"kernel 7": (lambda m: m.cw.conv.conv.kernel_size, (7, 7))},
    "lka": {"5x5 depth-wise": (lambda m: m.conv0.kernel_size, (5, 5)),
            "7x7 depth-wise, dilation 3": (lambda m: (m.conv_spatial.kernel_size, m.conv_spatial.dilation),
                                           ((7, 7), (3, 3)))},
    "van": {"LKA 7x7 dilation 3": (lambda m: m.spatial_gating_unit.conv_spatial.dilation, (3, 3))},
    "simam": {"lambda = 1e-4": (lambda m: m.e_lambda, 1e-4)},
    "mhsa": {"8 heads": (lambda m: m.num_heads, 8)},
    "transformer": {"MLP ratio 4": (lambda m: _width(m.linear1), 4 * C)},
    "oc": {"key channels C/2": (lambda m: _width(m.context.f_key[0]), C // 2),
           "value channels C/2": (lambda m: _width(m.context.f_value), C // 2)},
    "polarized": {"channel branch C/2": (lambda m: _width(m.channel.wv), C // 2),
                  "spatial branch C/2": (lambda m: _width(m.spatial.wq), C // 2),
                  "parallel layout": (lambda m: m.layout, "parallel")},
    "psa": {"reduction 4 (2048 -> 512)": (lambda m: _width(m.collect.reduce[0]), C // 4),
            "collect and distribute": (lambda m: m.branches, ("collect", "distribute")),
            "over-complete mask (2H-1)(2W-1)": (lambda m: _width(m.collect.mask_conv), 31 * 31)},
    "rga_s": {"spatial ratio 8": (lambda m: _width(m.theta[0]), C // 8)},
    "rga_c": {"channel ratio 8": (lambda m: _width(m.theta[0]), (16 * 16) // 8)},
    "scconv": {"pooling r = 4": (lambda m: m.scconv.k2[0].kernel_size, 4)},
    "attention_gate": {"inter channels C/2": (lambda m: _width(m.phi), C // 2),
                       "sub-sample factor 2": (lambda m: m.theta.stride, (2, 2))},
    "asp_oc": {"dilations 12, 24, 36": (lambda m: m.dilations, (12, 24, 36))},
    "mixed_pool": {"pool sizes 20, 12": (lambda m: m.pool_sizes, (20, 12))},
    "residual_attention": {"p = 1, t = 2, r = 1": (lambda m: (len(m.pre), len(m.trunk), len(m.down[0])), (1, 2, 1))},
    "strip": {"strip convs 3x1 and 1x3": (lambda m: (m.conv_h[0].kernel_size, m.conv_w[0].kernel_size),
                                          ((3, 1), (1, 3)))},
}

#: keys with no size or count the paper fixes beyond what the module's own tests pin (say why)
NO_PAPER_DEFAULT = {
    "cam": "parameter-free apart from the zero-initialised scale beta",
    "sanet": "the paper's sizes follow the backbone's stage widths; no free default",
    "stn": "the localisation net is task-specific in the paper",
}

CASES = [(key, what) for key, table in PAPER_DEFAULTS.items() for what in table]


def test_every_key_is_pinned_or_says_why():
    keys = set(visattn.list_modules())
    assert keys == set(PAPER_DEFAULTS) | set(NO_PAPER_DEFAULT), keys ^ (set(PAPER_DEFAULTS) | set(NO_PAPER_DEFAULT))


@pytest.mark.parametrize("key,what", CASES, ids=[f"{k}-{w}" for k, w in CASES])
def test_paper_default(key, what):
    get, expected = PAPER_DEFAULTS[key][what]
    assert get(build(key, channels=C)) == expected, f"{key}: {what}"
