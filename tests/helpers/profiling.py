"""A Lightning profiler that records what Lightning profiles: one action per hook call."""

from lightning.pytorch.profilers import PassThroughProfiler


class RecordingProfiler(PassThroughProfiler):
    """Appends each action's name ("[Callback]<state key>.<hook>", "[LightningModule]VAE.<hook>",
    ...) to the class-level `actions`, so a run built from a config can be read back."""

    actions: list[str] = []

    def start(self, action_name: str) -> None:
        RecordingProfiler.actions.append(action_name)
