"""The project's own schema model and the generator that writes xsd/ from it.

The model (basis.py: data types, messages.py: message structures, profiles.py: standards and releases)
is written by this project; `python -m tools.xsdgen` turns it into XSD files. See docs/catalogue.md.
"""

from tools.xsdgen.generate import generate_all

__all__ = ["generate_all"]
