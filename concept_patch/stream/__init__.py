"""One run's concept stream: the user's options, sessions, ComfyUI patches and wrappers, block hooks, the attention
capture and what an encode records."""
