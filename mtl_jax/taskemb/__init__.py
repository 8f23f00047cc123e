"""mtl-taskemb: task embeddings (TextEmb, TaskEmb), inter-task affinity, source ranking, task groups."""
