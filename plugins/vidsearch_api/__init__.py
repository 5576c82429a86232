"""The vidsearch search and labeling API and UI (docs/api.md).

`vidsearch_api.app.create_app` builds the FastAPI app from the routers in `routes` (bodies in
`schemas`; the user, write-authorisation and search-service dependencies in `dependencies`);
`vidsearch_api.plugin` registers it with the Airflow API server under `/vidsearch` (plus an "Object
search" entry in the Airflow navigation); `python -m vidsearch_api --port 8090` serves it on its own
for development.
"""
