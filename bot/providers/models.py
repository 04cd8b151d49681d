"""Which models a channel may choose (``/relay config model …``), and each provider's name for one.

A channel's ``model`` is a short name from ``FAMILIES`` (``llama-3.1-8b``), which every hosted
provider that serves it knows under its own id, or one provider's exact id
(``@cf/meta/llama-3.1-8b-instruct``).  The ``openai`` provider (a server the operator runs)
takes any name as it is.  A hosted provider serves the ids listed here and the one its
``<PROVIDER>_MODEL`` setting names.  All are Llama 3.x models: the token counts stay exact (one
tokenizer); the window and prices stay the provider's settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: short name -> provider -> that provider's model id
FAMILIES: dict[str, dict[str, str]] = {
    "llama-3.1-70b": {
        "aigateway": "meta/llama-3.1-70b-instruct",
        "deepinfra": "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo",
        "dataoorts": "meta/llama-3.1-70b-instruct",
        "cloudflare": "@cf/meta/llama-3.1-70b-instruct",
    },
    "llama-3.1-8b": {
        "deepinfra": "meta-llama/Meta-Llama-3.1-8B-Instruct",
        "cloudflare": "@cf/meta/llama-3.1-8b-instruct",
    },
    "llama-3.3-70b": {
        "deepinfra": "meta-llama/Llama-3.3-70B-Instruct",
        "cloudflare": "@cf/meta/llama-3.3-70b-instruct-fp8-fast",
    },
}
#: the provider that takes any model name (its server decides)
ANY_NAME = "openai"


def model_for(provider: str, name: str, configured: str) -> str | None:
    """``provider``'s id for the channel's model ``name``; None when it does not serve it."""
    if provider == ANY_NAME:
        return FAMILIES.get(name, {}).get(provider, name)
    family = FAMILIES.get(name)
    if family is not None:
        return family.get(provider) or (configured if _family_of(configured) == name else None)
    served = {ids[provider] for ids in FAMILIES.values() if provider in ids} | {configured}
    return name if name in served else None


def unserved(name: str, providers: Sequence[str], configured: Mapping[str, str]) -> list[str]:
    """The providers among ``providers`` that do not serve ``name``."""
    return [p for p in providers if model_for(p, name, configured.get(p, "")) is None]


def served_by(provider: str, configured: str) -> list[str]:
    """The names a channel may choose for ``provider`` (short names first)."""
    if provider == ANY_NAME:
        return ["any name its server knows"]
    shorts = [short for short, ids in FAMILIES.items() if provider in ids or _family_of(configured) == short]
    ids = [ids[provider] for ids in FAMILIES.values() if provider in ids]
    return list(dict.fromkeys([*shorts, *ids, configured]))


def _family_of(model_id: str) -> str | None:
    return next((short for short, ids in FAMILIES.items() if model_id in ids.values()), None)
