"""KServe's side of the benchmark: ``kserve.ModelServer`` with a minimal ``kserve.Model``.

It does what KServe's scikit-learn server (``sklearnserver.SKLearnModel``) does: load the joblib file,
turn the request into an array with ``kserve.utils.utils.get_predict_input`` and answer
``estimator.predict`` with ``get_predict_response``. Runs in its own virtualenv (``kserve==0.21.0``).

Usage: ``python kserve_server.py --model_name NAME --model_path model.joblib --http_port PORT``
"""

from __future__ import annotations

import argparse
from typing import Any

import joblib
import kserve
from kserve.utils.utils import get_predict_input, get_predict_response


class SKLearnModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.ready = False
        self._model: Any = None

    def load(self) -> bool:
        self._model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: Any = None) -> Any:
        instances = get_predict_input(payload)
        result = self._model.predict(instances)
        return get_predict_response(payload, result, self.name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--http_port", type=int, required=True)
    args = parser.parse_args()
    model = SKLearnModel(args.model_name, args.model_path)
    model.load()
    kserve.ModelServer(
        http_port=args.http_port, workers=1, enable_grpc=False, enable_docs_url=False,
        enable_latency_logging=False,
    ).start([model])


if __name__ == "__main__":
    main()
