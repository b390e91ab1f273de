"""The report: the run folder a stage writes into (workspace), HTML pages, detail pages and plots."""
