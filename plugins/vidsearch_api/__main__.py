"""`python -m vidsearch_api [--host 127.0.0.1] [--port 8090]`: the search API and UI on their own.

For development only. It reads the same configuration as Airflow (the `vidsearch_postgres` and
`weaviate_default` connections, `VIDSEARCH_STORAGE_ROOT`, models) and requires the same JWTs as the
Airflow API server: it validates them with Airflow's auth manager, so `[api_auth] jwt_secret` (or the
JWT key settings) must match the API server's. Get a token with `POST <airflow>/auth/token`, or log in
to the Airflow UI on the same host: browsers send its `_token` cookie to every port of that host.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidsearch_api", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    import uvicorn
    from airflow.api_fastapi.app import init_auth_manager

    from vidsearch_api.app import airflow_search_service, create_app

    init_auth_manager()  # what the Airflow API server does at start: tokens are validated by it
    app = create_app(airflow_search_service)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


# Guarded twice: Airflow's plugin loader would import this file as a module named `__main__` if it
# were not in .airflowignore; its spec name then is not `vidsearch_api.__main__`, and nothing runs.
if __name__ == "__main__" and __spec__ is not None and __spec__.name == "vidsearch_api.__main__":
    sys.exit(main())
