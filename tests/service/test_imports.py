"""What a serving process imports, in a fresh interpreter: no scikit-learn, joblib or pandas."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import SEED_JSON


def loaded_after(code: str, packages: tuple[str, ...]) -> list[str]:
    """The modules of `packages` a fresh interpreter holds after running `code`."""
    listing = (
        "import json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code + "\n" + listing], capture_output=True, text=True, check=True
    )
    return list(json.loads(result.stdout))


def test_serving_imports_neither_sklearn_nor_joblib() -> None:
    code = (
        "from oncology_model import Classifier, Tumor\n"
        "Classifier().predict(Tumor(4, 1, 2, 1, 2, 1, 1, 1, 1))"
    )
    assert loaded_after(code, ("sklearn", "joblib")) == []


def test_serving_never_imports_pandas() -> None:
    code = (
        "from webservice import create_app\n"
        "from oncology_model import Tumor\n"
        "client = create_app({'TESTING': True}).test_client()\n"
        f"assert client.post('/v1/predictions', json={SEED_JSON!r}).status_code == 200\n"
        "body = ','.join(Tumor.FEATURES) + '\\n' + '1,' * 8 + '1\\n'\n"
        "response = client.post('/v1/predictions/batch', data=body, content_type='text/csv')\n"
        "assert response.status_code == 200, response.data"
    )
    assert loaded_after(code, ("pandas",)) == []
