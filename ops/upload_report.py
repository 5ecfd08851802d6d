"""`make upload-report bucket=s3://BUCKET/PREFIX`: a model's figures to `<bucket>/<model version>/`.

What is there of: the training report (`report/`), the gate's JSON (`gate/compare.json`), the
test coverage (`coverage/`) and the bench figures (`bench/`), each object with its content type
(`oncology_model.storage.content_type`); a missing one is named and skipped. Credentials from the
standard AWS chain (and AWS_ENDPOINT_URL), never the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from oncology_model import storage
from oncology_model.integrity import METADATA_FILE
from oncology_model.storage import ObjectUrl, StorageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make upload-report", description=__doc__.split("\n")[0])
    parser.add_argument("--bucket", required=True, help="s3://BUCKET[/PREFIX]")
    parser.add_argument("--model", type=Path, required=True, help="the model's artifact folder")
    parser.add_argument("--report", type=Path, help="the training report's folder")
    parser.add_argument("--gate", type=Path, help="the gate's JSON (oncology-compare --json)")
    parser.add_argument("--coverage", type=Path, help="a coverage report (file or folder)")
    parser.add_argument("--bench", type=Path, help="the bench's folder (results.json, chart.png)")
    args = parser.parse_args(argv)
    try:
        bucket = ObjectUrl.parse(args.bucket)
        version = json.loads((args.model / METADATA_FILE).read_text())["model_version"]
    except (ValueError, OSError, KeyError) as error:
        print(f"upload-report: {error}", file=sys.stderr)
        return 2
    target = bucket.as_prefix().child(f"{version}/")
    parts = {
        "report": args.report,
        "gate": args.gate,
        "coverage": args.coverage,
        "bench": args.bench,
    }
    uploaded = 0
    try:
        for name, path in parts.items():
            if path is None or not path.exists():
                print(f"upload-report: no {name} ({path or 'not given'}): skipped")
                continue
            if path.is_dir():
                written = storage.put_tree(path, target.child(f"{name}/"))
            else:
                url = target.child(f"{name}/{path.name}")
                storage.put_file(path, url)
                written = [url]
            for url in written:
                print(f"upload-report: {url} ({storage.content_type(url.key)})")
            uploaded += len(written)
    except StorageError as error:
        print(f"upload-report: {error}", file=sys.stderr)
        return 1
    if not uploaded:
        print("upload-report: nothing to upload (make train, oncology-compare, make bench first)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
