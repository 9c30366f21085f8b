"""The recording agent's capture side: sources, gate, typed text, frames, batching, sealing."""
