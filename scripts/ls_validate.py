"""Validate Label Studio predictions against a labeling config with label-studio-sdk's LabelInterface.

Run with the Label Studio venv's python (the SDK lives there): stdin {"config": XML, "predictions": [...]},
stdout a JSON list with the problems of each prediction ([] when valid). Float frame ranges, which the
validator lets through and the video timeline cannot show, are reported too.
"""

import json
import sys

from label_studio_sdk.label_interface import LabelInterface


def problems(interface: LabelInterface, prediction: dict) -> list[str]:
    found = list(interface.validate_prediction(prediction, return_errors=True) or [])
    for item in prediction.get("result", []):
        for r in item.get("value", {}).get("ranges", []):
            if not all(isinstance(r.get(k), int) for k in ("start", "end")):
                found.append(f"region {item.get('id')}: frame range {r} is not integer")
    return found


if __name__ == "__main__":
    request = json.load(sys.stdin)
    interface = LabelInterface(request["config"])
    json.dump([problems(interface, p) for p in request["predictions"]], sys.stdout)
