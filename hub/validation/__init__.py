"""Validation core: hardened parsing, the schema registry and the validator (docs/validation.md)."""

from hub.validation.registry import RegistryError, Release, SchemaRegistry
from hub.validation.safe_xml import Limits, SafeParser, XmlRefused
from hub.validation.validator import Validator

__all__ = ["Limits", "RegistryError", "Release", "SafeParser", "SchemaRegistry", "Validator", "XmlRefused"]
