"""vidsearch: the processing library behind the video object search platform.

One module per pipeline stage (probe, split, frames, detect, embed, index) plus the catalog, object
storage and model loading. Nothing here imports Airflow: the same code runs inside an Airflow task, a
local worker process or a GPU pod.
"""

__version__ = "0.1.0"
