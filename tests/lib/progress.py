"""Test helpers for progress reporting."""
from ansible.module_utils.progress import ProgressFile


def recording(log):
    """A ProgressFile factory: real files, written on every update (no 1 s throttle), each state
    written also appended to log."""

    class Recording(ProgressFile):
        def _write(self, state, force=False, message=None):
            super()._write(state, force=True, message=message)
            log.append(self.state(state, message))
            return True

    return Recording
