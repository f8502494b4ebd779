"""Commands around the pipeline that are not stages of it."""
