"""One module per notebook: the steps each notebook calls, in its order.

``preprocess`` (01), ``finetune`` (02), ``evaluate`` (03), ``segment`` (04). Each step takes its
params section and its inputs and returns frames, models or metrics; ``save_*`` writes a stage's
results into the run folder and ``load_*`` reads them back for the later stages.
"""
