"""The benchmark scripts, run as ``python bench/<name>.py``.

Run so, a script has ``bench/`` first on ``sys.path`` and imports ``_support`` as a top-level
module; imported as ``bench.<name>`` (from a test, say) it finds it because this package puts
its directory on ``sys.path`` too (last: it shadows nothing).
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
