"""The sidecar injection webhook: AdmissionReview in, JSONPatch out (`review.py`), served over HTTPS (`server.py`)."""
