"""What the business reads: value-by-risk segments, aspect opinions, review topics, text clusters,
recommendations, opinion monitoring and explanations."""
