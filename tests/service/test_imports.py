"""What a serving process imports, in a fresh interpreter: no scikit-learn, joblib or pandas."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import SEED_JSON


def test_serving_imports_neither_sklearn_nor_joblib() -> None:
    code = (
        "import sys\n"
        "from oncology_model import Classifier, Tumor\n"
        "Classifier().predict(Tumor(4, 1, 2, 1, 2, 1, 1, 1, 1))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'joblib')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout.replace("'", '"'))
    assert not [m for m in loaded if m.split(".")[0] in ("sklearn", "joblib")]


def test_serving_never_imports_pandas() -> None:
    code = (
        "import sys\n"
        "from webservice import create_app\n"
        "from oncology_model import Classifier, Tumor\n"
        "client = create_app({'TESTING': True}).test_client()\n"
        f"assert client.post('/v1/predictions', json={SEED_JSON!r}).status_code == 200\n"
        "body = ','.join(Tumor.FEATURES) + '\\n' + '1,' * 8 + '1\\n'\n"
        "response = client.post('/v1/predictions/batch', data=body, content_type='text/csv')\n"
        "assert response.status_code == 200, response.data\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
