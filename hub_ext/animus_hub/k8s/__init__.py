"""Pure builders of Kubernetes objects (no I/O): run Jobs and workspace profiles.

Like kubespawner's ``objects.py``: keyword arguments in, a dict in the API's JSON
shape out, built from the ``kubernetes_asyncio`` models so a misspelt field fails
at once. Tests validate the dicts against the API's schemas (kubernetes-validate)
and assert the semantic rules themselves; no API server is needed.
"""

from .jobs import RunPodTemplate, job_name, make_run_job, make_token_secret, to_dict

__all__ = ["RunPodTemplate", "job_name", "make_run_job", "make_token_secret", "to_dict"]
