"""Not part of the package: makes `import persuasion` work from the folder that holds this clone.

Python searches the current folder first, so there it finds this folder, named persuasion/ after the
project, before the installed package; without this file it would import it as an empty namespace
package (`ImportError: cannot import name 'Detector'`). This file hands the import over to the real
package, ./persuasion/, with model/, train/ and eval/ found beside it as pyproject.toml maps them.
"""

import importlib.util
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(__name__, _ROOT / "persuasion" / "__init__.py",
                                               submodule_search_locations=[str(_ROOT / "persuasion"), str(_ROOT)])
sys.modules[__name__] = _package = importlib.util.module_from_spec(_spec)  # the import returns this module
_spec.loader.exec_module(_package)
