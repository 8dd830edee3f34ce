"""PRISM delta rule (gated delta rule with a rank-L write): naive reference, chunked torch, dispatcher."""
from .chunk import chunk_prism_delta_rule
from .naive import naive_prism_delta_rule
from .op import BACKENDS, prism_delta_rule, prism_delta_rule_flops

__all__ = ["BACKENDS", "chunk_prism_delta_rule", "naive_prism_delta_rule", "prism_delta_rule",
           "prism_delta_rule_flops"]
