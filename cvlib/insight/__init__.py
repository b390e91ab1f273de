"""What the business reads: value-by-risk segments, aspect opinions, review topics, text clusters,
recommendations, opinion monitoring, explanations, and what changed since the last report."""
