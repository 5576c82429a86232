"""Airflow-side glue for vidsearch: where connections, variables and environment become clients.

DAG files import from here; the processing library (`include/vidsearch`) never imports Airflow.
"""
