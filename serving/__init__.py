"""Search service (FastAPI) and its page: loads the champion encoder and exactly its index."""
