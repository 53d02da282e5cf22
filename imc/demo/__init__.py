"""``spicebridge demo``: the pipeline (``pipeline``) and its report (``report``)."""
