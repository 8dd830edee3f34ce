from .base import Mixer, MixerConfig
from .registry import get_mixer, import_plugins, mixer_names, register_mixer

__all__ = ["Mixer", "MixerConfig", "get_mixer", "import_plugins", "mixer_names", "register_mixer"]
