from .base import Mixer, MixerConfig, MixerState
from .registry import get_mixer, import_plugins, mixer_names, register_mixer

__all__ = ["Mixer", "MixerConfig", "MixerState", "get_mixer", "import_plugins", "mixer_names", "register_mixer"]
